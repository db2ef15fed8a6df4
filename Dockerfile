# Build: docker build -t proctor .
# Run:   docker run -v proctor-data:/var/lib/proctor -v $PWD/proctor.toml:/etc/proctor/proctor.toml:ro \
#          -p 6432:6432 -p 2222:2222 -p 8080:8080 proctor
FROM node:20-bookworm-slim AS console
WORKDIR /src/src/api/console
COPY src/api/console/package.json src/api/console/package-lock.json ./
RUN npm ci
COPY src/api/console/ ./
RUN npm run build

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The web console's assets are embedded into the binary at build time.
COPY --from=console /src/src/api/console/dist src/api/console/dist
RUN cargo build --release --locked --bin proctor && strip target/release/proctor

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/proctor --create-home --shell /usr/sbin/nologin proctor \
 && mkdir -p /etc/proctor/policies
COPY --from=build /src/target/release/proctor /usr/local/bin/proctor
COPY policies/*.toml /etc/proctor/policies/
USER proctor
VOLUME ["/var/lib/proctor"]
EXPOSE 6432 2222 8080
ENTRYPOINT ["/usr/local/bin/proctor"]
CMD ["serve", "--config", "/etc/proctor/proctor.toml"]
