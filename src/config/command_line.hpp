// The one reader of framex's command-line flags, for a program's own command
// line (`config::load(argc, argv)`, which leaves the program's flags alone)
// and for a worker's (`worker_main`, where every argument must be framex's).
#pragma once

#include "framex/config.hpp"

namespace framex::detail {

/// The configuration from the file (`--config`, else `FRAMEX_CONFIG`, else
/// ./framex.toml), the environment and then the flags: `--section.key value`,
/// `--section.key=value`, `--key value` for a top-level key, `--print-config`.
/// With `worker`, `--listen` and `--threads` stand for `--worker.listen` and
/// `--worker.threads`, and any other argument is an error. Throws
/// `config_error` naming the flag.
config load_command_line(int argc, const char* const* argv, bool worker);

}  // namespace framex::detail
