// `copyoffload copy SRC DST`: a copy through the same engine copyoffloadd
// runs (planner, backends, fallbacks), in this process.
#pragma once

#include "copyoffload_protocol.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace copyoffload::cli {

struct LocalCopyOptions {
	std::string source;
	std::string destination;
	std::vector<copyoffload_method> methods; // preference; empty: the defaults
	std::uint64_t segment = 0;               // largest slice; 0: the defaults
	bool progress = false;                   // draw a progress bar on `out`
};

// Copies the whole source over the destination (created with the source's
// permission bits, or truncated). Prints a summary line to `out`; returns
// 0, or 1 after printing the reason to `err`.
int local_copy(const LocalCopyOptions &options, std::FILE *out, std::FILE *err);

} // namespace copyoffload::cli
