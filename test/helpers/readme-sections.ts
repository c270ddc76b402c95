// The README's parts derived from the code: each lies between `<!-- generated: NAME -->` and `<!-- end: NAME -->`.
// test/readme.test.ts fails when one differs from what the code says; `npm run generate` rewrites them.

import { markdownTable, type Setting } from '../../src/api/settings.js';
import { SETTINGS } from '../../src/contract/settings.js';
import { SERVER_SETTINGS } from '../../src/server/config.js';

export const README_SECTIONS: Record<string, () => string> = {
  'job-settings': () =>
    markdownTable(Object.values(SETTINGS) as Setting[], { flags: true, defaultCell: (s) => (s.default === '' ? '(empty)' : undefined) }),
  'server-settings': () =>
    markdownTable(Object.values(SERVER_SETTINGS) as Setting[], {
      flags: false,
      defaultCell: (s) =>
        ({
          [SERVER_SETTINGS.bodyLimit.env]: '`16777216` (16 MiB)',
          [SERVER_SETTINGS.jobImage.env]: '`talos-etcd-backup:<version>`',
          [SERVER_SETTINGS.jobImagePullSecrets.env]: '(none)',
        })[s.env],
    }),
};

const section = (name: string) => new RegExp(`(<!-- generated: ${name} -->\\n)[\\s\\S]*?(\\n<!-- end: ${name} -->)`);

/** The README with every generated part as the code says it. Throws when a part's markers are missing. */
export function withGeneratedSections(readme: string): string {
  let out = readme;
  for (const [name, render] of Object.entries(README_SECTIONS)) {
    if (!section(name).test(out)) throw new Error(`README.md has no <!-- generated: ${name} --> ... <!-- end: ${name} --> part`);
    out = out.replace(section(name), (_all, start: string, end: string) => `${start}${render()}${end}`);
  }
  return out;
}
