# Writes a C++ source holding a file's bytes, for files compiled into the binary (the chat page,
# web/chat.html). Run at build time by a custom command that depends on the file (src/CMakeLists.txt):
#
#   cmake -DINPUT=<file> -DOUTPUT=<file.cpp> -DHEADER=<header declaring it> \
#         -DNAMESPACE=<ns> -DFUNCTION=<name> -P embed_file.cmake
#
# The source defines `std::string_view <NAMESPACE>::<FUNCTION>()`, returning the bytes (not
# NUL-terminated as far as the view goes; a NUL follows them so an empty file still makes an array).
foreach(var INPUT OUTPUT HEADER NAMESPACE FUNCTION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_file.cmake: -D${var}=... is required")
  endif()
endforeach()

file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR n_bytes "${n_hex} / 2")
# 16 bytes a line: "0x3c, 0x21, ..."
string(REPEAT "[0-9a-f]" 32 line_pattern)
string(REGEX REPLACE "(${line_pattern})" "\\1\n" hex "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")

file(WRITE "${OUTPUT}" "// Generated at build time from ${INPUT} by cmake/embed_file.cmake: do not edit.
#include \"${HEADER}\"

namespace ${NAMESPACE} {

namespace {
// ${n_bytes} bytes and a NUL.
constexpr unsigned char kBytes[] = {
${bytes}
0x00};
}  // namespace

std::string_view ${FUNCTION}() { return {reinterpret_cast<const char*>(kBytes), sizeof(kBytes) - 1}; }

}  // namespace ${NAMESPACE}
")
