# syntax=docker/dockerfile:1
# The sandbox image: the exec server (cluster-agent/sandbox-server, bundled with shared/sse.ts and
# zod/mini into one dependency-free server.mjs) plus the tools commands run with. Build from the repository root:
#   docker build -f k8s/images/sandbox.Dockerfile -t <registry>/pi-sandbox-runtime/sandbox:<tag> .
#
# PID 1 is tini: orphans of a command (`sleep 100 &` after setsid, killed process trees) are
# reparented to it and reaped. The pod template therefore sets `args` (not `command`, which would
# replace this ENTRYPOINT), tini starts the server as pid 2, and the server's /reset safety check
# (sandbox-server/processes.ts: "pid 2 under a non-host init") accepts exactly that.
# coreutils `timeout` and `env` are required by EXEC_MODE=api (cluster-agent/exec/remote-wrapper.ts).
# The server runs from /opt/sandbox-server/node, an execute-only (0111, root-owned) copy of node:
# the kernel makes a process that execs an unreadable binary non-dumpable, so commands (same uid)
# cannot ptrace it or open its /proc/<pid>/mem. util-linux's `ipcrm` (Essential in Debian) is what
# /reset removes SysV IPC objects with; `script` (bsdutils, Essential) and `stty` (coreutils) give
# `tty: true` processes their pty (sandbox-server/pty.ts).

FROM node:24-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY cluster-agent/sandbox-server ./cluster-agent/sandbox-server
# The one SSE codec, bundled into server.mjs with zod/mini (the output streams of /processes).
COPY shared/sse.ts ./shared/sse.ts
RUN npx tsx cluster-agent/sandbox-server/build.ts dist/sandbox-image

FROM node:24-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini coreutils python3 git ca-certificates procps \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /workspace /opt/sandbox-server \
 && chown 1000:1000 /workspace \
 && install -o root -g root -m 0111 /usr/local/bin/node /opt/sandbox-server/node
COPY --from=build /src/dist/sandbox-image/server.mjs /opt/sandbox-server/server.mjs
# uid/gid 1000 is the image's `node` user; the pod template runs as 1000:1000 too.
USER 1000:1000
ENV HOME=/workspace
WORKDIR /workspace
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/opt/sandbox-server/node", "/opt/sandbox-server/server.mjs"]
