// Rewrites the README's generated parts (test/helpers/readme-sections.ts). Run by `npm run generate`.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/api/crds.js';
import { withGeneratedSections } from './readme-sections.js';

const path = join(packageRoot(), 'README.md');
const before = readFileSync(path, 'utf8');
const after = withGeneratedSections(before);
if (after !== before) writeFileSync(path, after);
process.stdout.write(`README.md: ${after === before ? 'up to date' : 'generated parts rewritten'}\n`);
