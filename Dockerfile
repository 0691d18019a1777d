# infergate's image: the one static binary on distroless, as a non-root
# user. Build it with `make image` (docker or podman).
#
# The binary needs no C library: the built-in ONNX runtime is pure Go
# (GoMLX's Go backend), so CGO is off and the final stage has no shell, no
# package manager, nothing but the binary and CA certificates.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/infergate ./cmd/infergate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/infergate /usr/local/bin/infergate
USER nonroot:nonroot
WORKDIR /home/nonroot
EXPOSE 8080 8081 8090
ENTRYPOINT ["/usr/local/bin/infergate"]
# With no authentication the ports listen on loopback, which is nothing
# outside the container: run `serve -auth` (keys in the store under
# /home/nonroot/data, made with `infergate tenants|keys -data-dir`), or
# pass -insecure-listen-anywhere knowingly.
CMD ["serve", "-data-dir", "/home/nonroot/data"]
