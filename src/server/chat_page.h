// The built-in chat page served at GET / : web/chat.html, compiled in at build time (CMake writes
// its bytes into a generated source with cmake/embed_file.cmake, again whenever the file changes).
#pragma once

#include <string_view>

namespace velocity::server {

// The page's HTML (UTF-8), for the life of the program.
std::string_view chat_page();

}  // namespace velocity::server
