#include "rpc_relay.h"

#include "errors.h"
#include "interrupts_blocked.h"

#include "ggml-rpc.h"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

namespace allama {

namespace {

// The wire protocol, version 7 (ggml/src/ggml-rpc): a request is | command (1 byte) |
// payload size (8 bytes, little-endian) | payload |; the commands below that have a reply
// get | reply size (8 bytes) | reply |. A new major version must be checked against this table.
static_assert(RPC_PROTO_MAJOR_VERSION == 7, "ggml's RPC protocol changed: check kReplySize against ggml-rpc.cpp");

constexpr uint8_t kGetAlignment = 1;
constexpr uint8_t kGetMaxSize = 2;
constexpr uint8_t kGetTensor = 8;
constexpr uint8_t kHello = 14;
constexpr uint8_t kCommandCount = 19;  // commands 0..17 and NONE (18, never sent)
constexpr int64_t kNoReply = -1;
constexpr int64_t kSizeInRequest = -2;  // GET_TENSOR: the request's last 8 bytes
constexpr int64_t kReplySize[kCommandCount] = {
    16,              // ALLOC_BUFFER: remote pointer, size
    8,               // GET_ALIGNMENT
    8,               // GET_MAX_SIZE
    8,               // BUFFER_GET_BASE
    kNoReply,        // FREE_BUFFER
    kNoReply,        // BUFFER_CLEAR
    kNoReply,        // SET_TENSOR
    1,               // SET_TENSOR_HASH: found in the worker's cache?
    kSizeInRequest,  // GET_TENSOR
    1,               // COPY_TENSOR
    kNoReply,        // GRAPH_COMPUTE
    16,              // GET_DEVICE_MEMORY: free, total
    kNoReply,        // INIT_TENSOR
    8,               // GET_ALLOC_SIZE
    28,              // HELLO: version (3 bytes + padding), 24 bytes of transport capabilities
    4,               // DEVICE_COUNT
    kNoReply,        // GRAPH_RECOMPUTE
    kNoReply,        // MEMSET_TENSOR
    kNoReply,        // NONE
};
constexpr size_t kCapsSize = 24;
constexpr size_t kSmallRequest = 64 * 1024;  // larger payloads (weights) are streamed through

// Sends or receives exactly n bytes (retrying after signals); false once the peer is gone.
template <typename Byte, typename Io>
bool transfer_all(Byte * data, size_t n, Io io) {
    while (n > 0) {
        ssize_t k = io(data, n);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return false;
        }
        data += k;
        n -= static_cast<size_t>(k);
    }
    return true;
}

bool send_all(int fd, const void * data, size_t n) {
    return transfer_all(static_cast<const uint8_t *>(data), n,
                        [fd](const uint8_t * p, size_t k) { return ::send(fd, p, k, MSG_NOSIGNAL); });
}

bool recv_all(int fd, void * data, size_t n) {
    return transfer_all(static_cast<uint8_t *>(data), n, [fd](uint8_t * p, size_t k) { return ::recv(fd, p, k, 0); });
}

void close_fd(int & fd) {
    if (fd >= 0) {
        ::close(fd);
        fd = -1;
    }
}

std::string last_error(const char * fallback) {
    return errno != 0 ? std::string(std::strerror(errno)) : std::string(fallback);
}

// Splits "host:port" or "[v6]:port"; throws ValueError for anything else.
void split_endpoint(const std::string & endpoint, std::string & host, std::string & port) {
    size_t colon = endpoint.rfind(':');
    require(colon != std::string::npos && colon > 0 && colon + 1 < endpoint.size(),
            "an RPC worker is 'host:port', got '" + endpoint + "'");
    host = endpoint.substr(0, colon);
    port = endpoint.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    bool digits = port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos;
    require(digits && std::stoi(port) >= 1 && std::stoi(port) <= 65535,
            "an RPC worker's port must be 1-65535, got '" + endpoint + "'");
}

// Low latency both ways, and a dead peer noticed within ~15 s even while a reply is awaited
// (keepalive probes are answered by the worker's kernel however long its compute takes).
void tune_socket(int fd, bool to_worker) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!to_worker) {
        return;
    }
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    int idle = 5, interval = 2, count = 4;
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    unsigned int user_timeout_ms = 15000;  // data sent but unacknowledged this long: the peer is gone
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
}

// connect() with a deadline; returns the connected socket or -1 with errno set.
int connect_with_timeout(const addrinfo * ai, int timeout_ms) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        return -1;
    }
    int flags = ::fcntl(fd, F_GETFL, 0);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, timeout_ms);
        if (rc == 0) {
            errno = ETIMEDOUT;
            rc = -1;
        } else if (rc > 0) {
            int err = 0;
            socklen_t len = sizeof(err);
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            errno = err;
            rc = err == 0 ? 0 : -1;
        }
    }
    if (rc != 0) {
        int saved = errno;
        ::close(fd);
        errno = saved;
        return -1;
    }
    ::fcntl(fd, F_SETFL, flags);
    return fd;
}

// Waits until `fd` is readable, at most `timeout_ms`; false on timeout (errno ETIMEDOUT).
bool wait_readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    int rc;
    do {
        rc = ::poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        errno = ETIMEDOUT;
    }
    return rc > 0;
}

// The version this build speaks, as a HELLO reply (what the relay tells ggml's client).
void local_hello_reply(uint8_t (&reply)[28]) {
    std::memset(reply, 0, sizeof(reply));
    reply[0] = RPC_PROTO_MAJOR_VERSION;
    reply[1] = RPC_PROTO_MINOR_VERSION;
    reply[2] = RPC_PROTO_PATCH_VERSION;
}

// A reply in the worker's place once it is lost: zero-filled, except where zero would trip
// an assertion in ggml (a buffer alignment must be a power of two).
void fabricated_reply(uint8_t cmd, std::vector<uint8_t> & out, uint64_t size) {
    out.assign(size, 0);
    if (cmd == kGetAlignment && size == 8) {
        uint64_t alignment = 64;
        std::memcpy(out.data(), &alignment, 8);
    } else if (cmd == kGetMaxSize && size == 8) {
        uint64_t max_size = UINT64_MAX;
        std::memcpy(out.data(), &max_size, 8);
    } else if (cmd == kHello && size == 28) {
        uint8_t hello[28];
        local_hello_reply(hello);
        std::memcpy(out.data(), hello, 28);
    }
}

}  // namespace

RpcRelay::RpcRelay(const std::string & worker, double connect_timeout_s)
    : worker_(worker), connect_timeout_s_(connect_timeout_s) {
    split_endpoint(worker, host_, port_);
    require(connect_timeout_s > 0, "the RPC connect timeout must be positive");
    std::string error;
    pending_upstream_ = connect_worker(error);
    if (pending_upstream_ < 0) {
        throw ModelLoadFailure("RPC worker " + worker + " is unreachable: " + error);
    }

    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 ||
        ::listen(listener_, 4) != 0 || ::getsockname(listener_, reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
        std::string reason = last_error("unknown error");
        close_fd(listener_);
        close_fd(pending_upstream_);
        throw ModelLoadFailure("cannot open a local relay for RPC worker " + worker + ": " + reason);
    }
    local_endpoint_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    InterruptsBlocked blocked;  // Ctrl-C and SIGTERM stay with Python's main thread
    thread_ = std::thread([this] { accept_clients(); });
}

RpcRelay::~RpcRelay() {
    stopping_.store(true);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ::shutdown(listener_, SHUT_RDWR);
        if (client_ >= 0) {
            ::shutdown(client_, SHUT_RDWR);
        }
        if (upstream_ >= 0) {
            ::shutdown(upstream_, SHUT_RDWR);
        }
    }
    if (thread_.joinable()) {
        thread_.join();
    }
    close_fd(listener_);
    close_fd(pending_upstream_);
}

std::optional<std::string> RpcRelay::loss() const {
    if (!lost()) {
        return std::nullopt;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    return loss_;
}

void RpcRelay::lose(const std::string & reason) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!lost_.load()) {
        loss_ = reason;
        lost_.store(true, std::memory_order_release);
    }
    if (upstream_ >= 0) {
        ::shutdown(upstream_, SHUT_RDWR);
    }
}

int RpcRelay::connect_worker(std::string & error) const {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo * found = nullptr;
    int rc = ::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &found);
    if (rc != 0) {
        error = std::string("cannot resolve host: ") + ::gai_strerror(rc);
        return -1;
    }
    const int timeout_ms = static_cast<int>(connect_timeout_s_ * 1000);
    int fd = -1;
    error = "no address";
    for (addrinfo * ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
        errno = 0;
        fd = connect_with_timeout(ai, timeout_ms);
        if (fd < 0) {
            error = last_error("cannot connect");
        }
    }
    ::freeaddrinfo(found);
    if (fd < 0) {
        return -1;
    }
    tune_socket(fd, true);
    // The handshake: HELLO with no transport capabilities (plain TCP through the relay).
    uint8_t request[1 + 8 + kCapsSize] = {kHello};
    uint64_t size = kCapsSize;
    std::memcpy(request + 1, &size, 8);
    uint64_t reply_size = 0;
    uint8_t reply[28];
    // A worker serves one client at a time: one busy with another answers only when free.
    if (!send_all(fd, request, sizeof(request)) || !wait_readable(fd, timeout_ms) ||
        !recv_all(fd, &reply_size, 8) || reply_size != sizeof(reply) || !recv_all(fd, reply, sizeof(reply))) {
        error = errno == ETIMEDOUT ? "no answer to the handshake (is it serving another client?)"
                                   : "the handshake failed (is it an RPC worker?)";
        ::close(fd);
        return -1;
    }
    if (reply[0] != RPC_PROTO_MAJOR_VERSION || reply[1] > RPC_PROTO_MINOR_VERSION) {
        error = "it speaks RPC protocol " + std::to_string(reply[0]) + "." + std::to_string(reply[1]) + "." +
                std::to_string(reply[2]) + ", this build " + std::to_string(RPC_PROTO_MAJOR_VERSION) + "." +
                std::to_string(RPC_PROTO_MINOR_VERSION) + "; run the same version of allama (or llama.cpp) on both";
        ::close(fd);
        return -1;
    }
    return fd;
}

void RpcRelay::accept_clients() {
    while (!stopping_.load()) {
        int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return;  // shut down
        }
        tune_socket(client, false);
        serve_client(client);
    }
}

// One client connection of ggml's RPC backend, served to its end like the worker would:
// one at a time, each with a connection of its own to the worker.
void RpcRelay::serve_client(int client) {
    int upstream = -1;
    if (!lost()) {
        if (pending_upstream_ >= 0) {
            std::swap(upstream, pending_upstream_);
        } else {
            std::string error;
            upstream = connect_worker(error);
            if (upstream < 0) {
                lose(error);
            }
        }
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        client_ = client;
        upstream_ = upstream;
        if (stopping_.load()) {
            ::shutdown(client, SHUT_RDWR);
        }
    }
    while (!stopping_.load()) {
        uint8_t cmd = 0;
        uint64_t size = 0;
        if (!recv_all(client, &cmd, 1) || !recv_all(client, &size, 8) || cmd >= kCommandCount) {
            break;  // the client closed the connection (or broke the protocol)
        }
        if (!relay_message(client, cmd, size)) {
            break;
        }
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        client_ = -1;
        upstream_ = -1;
    }
    ::close(client);
    if (upstream >= 0) {
        ::close(upstream);
    }
}

// Relays one request (its header read already) and its reply; false when the client is gone.
bool RpcRelay::relay_message(int client, uint8_t cmd, uint64_t size) {
    int upstream;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        upstream = upstream_;
    }
    std::vector<uint8_t> payload;
    const bool small = size <= kSmallRequest;
    if (small) {
        payload.resize(size);
        if (!recv_all(client, payload.data(), size)) {
            return false;
        }
    }
    if (cmd == kHello) {
        // The relay made the handshake with the worker itself; the client gets this build's version.
        uint8_t reply[28];
        local_hello_reply(reply);
        uint64_t reply_size = sizeof(reply);
        return small && send_all(client, &reply_size, 8) && send_all(client, reply, sizeof(reply));
    }
    int64_t reply_size = kReplySize[cmd];
    if (reply_size == kSizeInRequest) {
        if (!small || size < 8) {
            return false;
        }
        uint64_t wanted = 0;
        std::memcpy(&wanted, payload.data() + size - 8, 8);
        reply_size = static_cast<int64_t>(wanted);
    }

    // The request, forwarded while the worker lives (a large one streamed through).
    bool forward = !lost() && upstream >= 0;
    if (forward) {
        uint8_t header[9] = {cmd};
        std::memcpy(header + 1, &size, 8);
        forward = send_all(upstream, header, sizeof(header)) && (!small || send_all(upstream, payload.data(), size));
    }
    if (!small) {
        std::vector<uint8_t> chunk(1 << 20);
        uint64_t left = size;
        while (left > 0) {
            size_t n = static_cast<size_t>(std::min<uint64_t>(left, chunk.size()));
            if (!recv_all(client, chunk.data(), n)) {
                return false;
            }
            forward = forward && send_all(upstream, chunk.data(), n);
            left -= n;
        }
    }
    if (!forward && !lost() && upstream >= 0) {
        lose("the connection broke while sending: " + last_error("connection closed"));
    }
    if (reply_size == kNoReply) {
        return true;
    }

    // The reply: the worker's while it lives; from where it stops, zeros in its place.
    const uint64_t expected = static_cast<uint64_t>(reply_size);
    if (!send_all(client, &expected, 8)) {
        return false;
    }
    uint64_t done = 0;
    if (!lost() && upstream >= 0) {
        uint64_t got_size = 0;
        if (!recv_all(upstream, &got_size, 8)) {
            lose("it closed the connection (" + last_error("end of stream") + ")");
        } else if (got_size != expected) {
            lose("it sent a malformed reply");
        } else {
            std::vector<uint8_t> chunk(static_cast<size_t>(std::min<uint64_t>(expected, 1 << 20)));
            while (done < expected) {
                size_t n = static_cast<size_t>(std::min<uint64_t>(expected - done, chunk.size()));
                if (!recv_all(upstream, chunk.data(), n)) {
                    lose("it closed the connection mid-reply (" + last_error("end of stream") + ")");
                    break;
                }
                if (!send_all(client, chunk.data(), n)) {
                    return false;
                }
                done += n;
            }
        }
    }
    if (done < expected) {
        std::vector<uint8_t> rest;
        fabricated_reply(cmd, rest, done == 0 ? expected : 0);
        if (done > 0) {
            rest.assign(static_cast<size_t>(expected - done), 0);
        }
        return send_all(client, rest.data(), rest.size());
    }
    return true;
}

std::optional<std::string> RpcRelays::loss() const {
    for (const auto & relay : relays) {
        if (auto reason = relay->loss()) {
            return "RPC worker " + relay->worker() + " was lost: " + *reason +
                   ". The model's layers on it are gone; load the model again";
        }
    }
    return std::nullopt;
}

void RpcRelays::release(const std::string & reason) {
    for (const auto & relay : relays) {
        relay->release(reason);
    }
}

void check_rpc_relays(const std::shared_ptr<RpcRelays> & relays, const char * what) {
    if (!relays) {
        return;
    }
    if (auto loss = relays->loss()) {
        throw WorkerLost(std::string(what) + " failed: " + *loss);
    }
}

}  // namespace allama
