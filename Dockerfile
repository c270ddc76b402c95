# Placeholder until the packaging work: the image will be a multi-stage Node.js 22 LTS build
# (npm ci, tsc, npm ci --omit=dev) running `talos-etcd-backup serve` as a non-root user.
# Not built or tested yet (no Docker engine on the development machines); until then run the server
# with `npm ci && npm start`.
FROM node:22-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY crds ./crds
RUN npm ci && npx tsc -p tsconfig.build.json && npm prune --omit=dev
USER 65532:65532
ENTRYPOINT ["node", "/app/dist/src/main.js"]
CMD ["serve"]
