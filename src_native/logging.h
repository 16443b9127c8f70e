// llama.cpp's log output, routed to Python's `logging` (logger "allama.native").
//
// Forwarding is off by default (llama.cpp is chatty); set_log_level() turns it
// on. Independently of forwarding, error and warning lines are remembered per
// thread so that a failing call can put llama.cpp's own reason in its exception.
#pragma once

#include <nanobind/nanobind.h>

#include <string>

namespace allama {

// Collects the llama.cpp warnings and errors logged on this thread while it is
// alive; message() joins them. Use it around a call whose failure is reported
// only through the log (model load, grammar parse, decode).
class LogCapture {
public:
    LogCapture();
    ~LogCapture();
    LogCapture(const LogCapture &) = delete;
    LogCapture & operator=(const LogCapture &) = delete;

    // The captured lines joined with "; ", or `fallback` when nothing was logged.
    std::string message(const std::string & fallback = "") const;

private:
    bool outer_;
};

void init_logging(nanobind::module_ & m);

}  // namespace allama
