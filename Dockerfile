# talos-etcd-backup: one image for the Metacontroller hook server (`serve`, the default command) and for the
# commands its Jobs run (`snapshot`, `delete`; `verify` by hand).
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" -t talos-etcd-backup:0.1.0 .
#
# Three stages on one base image: `build` installs every dependency and compiles the TypeScript; `deps` installs
# the production dependencies alone, from package.json and package-lock.json only; the last stage copies the
# compiled JavaScript and those dependencies onto a fresh base. test/image/recipe.test.ts performs these steps as
# written here (COPY, RUN, ENV, WORKDIR, USER, ENTRYPOINT, CMD) without a Docker engine, then runs the result as
# the Deployment and the snapshot Job do: as UID 65532, on a read-only root filesystem.
#
# Base: Node.js 22 LTS on Debian 12 slim (glibc: the snapshot Job's MALLOC_* tuning is glibc's), pinned to a patch
# release. Pin it by digest too when you publish (`docker buildx imagetools inspect <tag>` gives it, e.g.
# node:22.23.2-bookworm-slim@sha256:<digest>), and let a bot raise both. Every FROM uses this one argument.
ARG NODE_IMAGE=node:22.23.2-bookworm-slim

# ---- build: every dependency, then tsc (tsconfig.build.json compiles src/ only, into dist/src) -------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
# No install scripts: package.json's allowScripts denies the only one (protobufjs' postinstall, a version-scheme
# warning). The npm 10 that Node.js 22 images ship does not read allowScripts, so say it with --ignore-scripts (the
# root package has no lifecycle scripts of its own to lose). The cache mount needs BuildKit (docker build's default).
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only (no TypeScript, no test tools) -------------------------------------------
# Nor the optional @kubernetes/client-node: only the workstation commands (list, backup, restore --backup) use it,
# and neither the hook server nor the Jobs run them.
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund

# ---- runtime ---------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
ARG NODE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="talos-etcd-backup" \
      org.opencontainers.image.description="Metacontroller hooks that back up the etcd of Talos Linux control planes to S3" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"

# Nothing here runs a package manager: drop npm, npx, corepack and yarn from the base image (smaller, and nothing
# for an image scanner to report that never runs). `node` itself stays in /usr/local/bin.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-v*

ENV NODE_ENV=production
# /app, owned by root and read-only to the process: dist/src (the compiled CLI and server), the production
# node_modules, and what the code reads next to package.json at run time (crds/ for the schemas, protos/ for the
# Talos API; package.json for "type": "module" and the version). Nothing is written at run time: no HOME, no
# /tmp and no emptyDir are needed, so readOnlyRootFilesystem: true works as it is.
WORKDIR /app
COPY --from=deps /src/node_modules ./node_modules
COPY crds ./crds
COPY protos ./protos
COPY package.json ./
COPY --from=build /src/dist/src ./dist/src

# Numeric, so runAsNonRoot can verify it; the Jobs' pod securityContext uses the same 65532:65532.
USER 65532:65532
EXPOSE 8080
# node is PID 1 and needs no init: `serve` (close-with-grace) and the Job commands handle SIGTERM themselves, and
# nothing spawns child processes to reap. The Jobs set their own command: node <flags> /app/dist/src/main.js snapshot.
ENTRYPOINT ["node", "/app/dist/src/main.js"]
CMD ["serve"]
