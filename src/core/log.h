// log_line — one line on stderr for operators: "2025-06-01T12:34:56.789Z velocity: <message>".
// The line goes out in one write, so lines from concurrent threads never interleave. Control
// characters in the message (a newline from a client's input) are replaced by spaces.
#pragma once

#include <string_view>

namespace velocity {

void log_line(std::string_view message);

}  // namespace velocity
