// The Node.js the image ships (Dockerfile: ARG NODE_IMAGE=node:<version>-...), for tests of code paths this
// machine's Node does not take, such as node:zlib's zstd. scripts/install-test-deps.sh fetches it once, as the npm
// package node-linux-<arch>, into the cache directory below; same version and path logic as there.
//
// Missing is an error (never a skip): run ./scripts/install-test-deps.sh.

import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/api/crds.js';

/** The Node.js version of the image's base, from the Dockerfile's NODE_IMAGE argument (or a literal FROM node:X). */
export function imageNodeVersion(): string {
  const dockerfile = readFileSync(join(packageRoot(), 'Dockerfile'), 'utf8');
  const match = /^(?:ARG NODE_IMAGE=|FROM )node:(\d+\.\d+\.\d+)/m.exec(dockerfile);
  if (!match) throw new Error('Dockerfile names no node:<version> image (expected ARG NODE_IMAGE=node:X.Y.Z-...)');
  return match[1]!;
}

/** Where install-test-deps.sh puts that Node: ${XDG_CACHE_HOME:-$HOME/.cache}/talos-etcd-backup/node-v<version>. */
export function imageNodeDir(version = imageNodeVersion()): string {
  const cache = process.env.XDG_CACHE_HOME || join(process.env.HOME || homedir(), '.cache');
  return join(cache, 'talos-etcd-backup', `node-v${version}`);
}

let checked: string | undefined;

/** Path of the image's `node` binary; throws (never skips) when it is missing or is another version. */
export function imageNodeBinary(): string {
  if (checked) return checked;
  const version = imageNodeVersion();
  const binary = join(imageNodeDir(version), 'bin', 'node');
  const hint = `run ./scripts/install-test-deps.sh (it fetches Node.js ${version}, the image's, into ${imageNodeDir(version)})`;
  try {
    accessSync(binary, constants.X_OK);
  } catch {
    throw new Error(`the tests need the image's Node.js ${version} at ${binary}, which is missing; ${hint}`);
  }
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.stdout.trim() !== `v${version}`) {
    throw new Error(
      `${binary} is not Node.js ${version} (${probe.error?.message ?? `it says ${JSON.stringify(probe.stdout.trim())}`}); ${hint}`,
    );
  }
  checked = binary;
  return binary;
}
