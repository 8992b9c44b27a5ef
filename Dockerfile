# customer-service: build with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -t customer-service .
#   docker run -p 3004:3004 -v cs-data:/data customer-service        # SQLite in /data
# With PostgreSQL and Redis: compose.yaml.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p customer-service \
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
