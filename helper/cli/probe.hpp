// `copyoffload probe PATH|DEVICE`: what each copy method really does at a
// path, found by trying it on scratch files there, and what the engine
// does with a test range, so an administrator can see what copies will do.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace copyoffload::cli {

struct MethodVerdict {
	std::string method{};  // copyoffload_method_name
	std::string result{};  // "yes", "no", "n/a", "error"
	std::string detail{};  // what happened, for people
	// Of the probe range after the method ran (FIEMAP_EXTENT_SHARED); none
	// when the method failed or the filesystem has no FIEMAP.
	std::optional<std::uint64_t> shared_bytes{};
};

struct EngineTrial {
	std::uint64_t length = 0;
	int status = 0; // 0 or errno
	std::uint64_t bytes_done = 0;
	std::uint64_t clone = 0, copy_file_range = 0, device = 0, read_write = 0;
	bool data_verified = false;
	std::optional<std::uint64_t> shared_bytes{};
};

// A block device: what it reports about copy offload (device_probe.hpp).
struct DeviceReport {
	bool copy = false;  // the helper can copy on it with device commands
	std::string detail; // how, or why not
	std::vector<std::pair<std::string, std::string>> facts;
};

struct ProbeReport {
	std::string path{};
	std::string kind{};        // "directory", "file", "block device"
	std::string filesystem{};  // "xfs", "ext4", ... (of the directory probed)
	std::string source{};      // the mount's source, e.g. /dev/loop3
	std::uint64_t block_size = 0;
	std::string error{};       // set when the probe could not run at all
	std::vector<MethodVerdict> methods{};
	std::optional<EngineTrial> engine{};
	std::optional<DeviceReport> device{};
};

// Probes a directory (or a regular file's directory) with scratch files
// that are never linked into it (O_TMPFILE), or a block device, which is
// only asked (NVMe Identify, SCSI copy parameters), never written.
ProbeReport probe(const std::string &path);

std::string probe_table(const ProbeReport &report);
std::string probe_json(const ProbeReport &report);

} // namespace copyoffload::cli
