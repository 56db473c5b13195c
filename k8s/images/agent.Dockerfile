# syntax=docker/dockerfile:1
# The agent image. Build from the repository root:
#   docker build -f k8s/images/agent.Dockerfile -t <registry>/pi-sandbox-runtime/agent:<tag> .
# Stage 1 bundles cluster-agent/main.ts with cluster-agent/build.ts (the same build devstack
# runs); stage 2 installs only the production dependencies the bundle leaves external; the
# runtime stage is node:24-slim with the bundle, those node_modules and nothing else, as a
# non-root user. It writes nothing to its root filesystem (readOnlyRootFilesystem: true in the
# Deployment; /tmp is an emptyDir).

FROM node:24-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY shared ./shared
COPY cluster-agent ./cluster-agent
COPY k8s/base/sandbox-pod-template.json ./k8s/base/sandbox-pod-template.json
RUN npx tsx cluster-agent/build.ts dist/agent/main.mjs

FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/agent/main.mjs ./main.mjs
USER 10001:10001
EXPOSE 8081 9464
ENTRYPOINT ["node", "--enable-source-maps", "/app/main.mjs"]
