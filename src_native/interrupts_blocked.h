// Threads inherit the signal mask of the thread that makes them. Holding an InterruptsBlocked
// while making native worker threads keeps the kernel from handing Ctrl-C or SIGTERM to them:
// Python's main thread could then sleep through a Ctrl-C.
#pragma once

#include <csignal>
#include <pthread.h>

namespace allama {

class InterruptsBlocked {
public:
    InterruptsBlocked() {
        sigset_t blocked;
        sigemptyset(&blocked);
        sigaddset(&blocked, SIGINT);
        sigaddset(&blocked, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &blocked, &previous_);
    }
    ~InterruptsBlocked() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
    InterruptsBlocked(const InterruptsBlocked &) = delete;
    InterruptsBlocked & operator=(const InterruptsBlocked &) = delete;

private:
    sigset_t previous_;
};

}  // namespace allama
