// RpcRelay: the link between a model and one RPC worker (ggml's rpc-server protocol).
//
// ggml's RPC client ends the whole process (GGML_ABORT) when a worker cannot be reached or
// goes away in the middle of a call. So a model never talks to a worker directly: it talks
// to a relay listening on 127.0.0.1, which checks the worker first (connects and shakes
// hands, so an unreachable or incompatible worker is a clear ModelLoadError), forwards each
// message while the worker lives, and once it is lost answers every further message itself
// with a well-formed, zero-filled reply. The loss is recorded; Context raises WorkerLost
// after any decode that ran through a lost relay (its results are garbage).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace allama {

class RpcRelay {
public:
    // Connects to `worker` ("host:port", "[v6addr]:port") within `connect_timeout_s` and
    // checks its protocol version; throws ModelLoadFailure naming the worker otherwise.
    RpcRelay(const std::string & worker, double connect_timeout_s);
    ~RpcRelay();
    RpcRelay(const RpcRelay &) = delete;
    RpcRelay & operator=(const RpcRelay &) = delete;

    const std::string & worker() const { return worker_; }
    // "127.0.0.1:<port>": the endpoint to hand to ggml's RPC backend instead of the worker's.
    const std::string & local_endpoint() const { return local_endpoint_; }
    // Why the worker was lost ("connection closed", ...), or nothing while it is served.
    std::optional<std::string> loss() const;
    // Ends the session with the worker (which frees what it held), as if it were lost for `reason`.
    void release(const std::string & reason) { lose(reason); }

private:
    void accept_clients();
    void serve_client(int client);
    bool relay_message(int client, uint8_t cmd, uint64_t size);
    int connect_worker(std::string & error) const;
    void lose(const std::string & reason);
    bool lost() const { return lost_.load(std::memory_order_acquire); }

    std::string worker_;
    std::string host_;
    std::string port_;
    double connect_timeout_s_;
    std::string local_endpoint_;
    int listener_ = -1;
    int upstream_ = -1;       // the connection to the worker of the client being served
    int pending_upstream_ = -1;  // the checked connection made at construction, for the first client
    int client_ = -1;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> lost_{false};
    mutable std::mutex mutex_;  // guards loss_, client_ and upstream_ (for shutdown)
    std::string loss_;
    std::thread thread_;
};

// The relays of one model: its RPC devices' links to their workers.
struct RpcRelays {
    std::vector<std::unique_ptr<RpcRelay>> relays;
    // ggml's RPC client shares one connection per worker among every context of the model and
    // does not take turns on it: a context holds this while it computes (one_call_at_a_time).
    std::mutex calls;

    // "RPC worker h:p was lost (reason)" for the first lost worker, or nothing.
    std::optional<std::string> loss() const;
    // Ends every session with the workers; further requests are answered as for a lost worker.
    void release(const std::string & reason);
};

// A lock on `relays`' calls (none for a local model, whose `relays` is null). Take it with
// the GIL released.
inline std::unique_lock<std::mutex> one_call_at_a_time(const std::shared_ptr<RpcRelays> & relays) {
    return relays ? std::unique_lock<std::mutex>(relays->calls) : std::unique_lock<std::mutex>();
}

// Raises allama.errors.WorkerLostError when a relay in `relays` (may be null) lost its worker.
void check_rpc_relays(const std::shared_ptr<RpcRelays> & relays, const char * what);

}  // namespace allama
