// velocity: one binary, one subcommand per job. The CLI wires modules together; no logic here.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"velocity: LLM inference server for GGUF models on NVIDIA GPUs"};
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const velocity::Error& e) {
    std::fprintf(stderr, "velocity: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
