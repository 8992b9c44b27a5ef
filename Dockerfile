# customer-service: build with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -t customer-service .
#   docker run -p 3004:3004 -v cs-data:/data customer-service        # SQLite in /data
# With PostgreSQL and Redis: compose.yaml (settings in .env, see .env.example).
#
# The dependencies are built in a layer of their own (cargo-chef): a change to the service's
# source rebuilds only the service, not the ~400 crates under it. CI does not build this file
# (no container engine runs on the project's machines); the binary it builds is what the tests
# cover.

# The toolchain is pinned: the release link's order file (crates/customer-service/link-order.txt)
# names functions as this version's compiler does (docs/architecture.md, departure 13).
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version ~0.1
WORKDIR /src

# The dependency graph only: unchanged by source edits, so the next stage stays cached.
FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# .cargo/config.toml sets the C flags mimalloc is built with: needed before the dependencies.
COPY .cargo .cargo
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p customer-service --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p customer-service \
 && strip target/release/customer-service

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --create-home service
COPY --from=build /src/target/release/customer-service /usr/local/bin/customer-service
USER service
WORKDIR /data
ENV HOST=0.0.0.0 \
    PORT=3004 \
    DATABASE_URL=sqlite:///data/customer-service.db \
    LOG_FORMAT=json
EXPOSE 3004
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["customer-service", "healthcheck"]
ENTRYPOINT ["customer-service"]
CMD ["serve"]
