#include "probe.hpp"

#include "clone_backend.hpp"
#include "copy_file_range_backend.hpp"
#include "copy_service.hpp"
#include "device_probe.hpp"
#include "logging.hpp"
#include "read_write_backend.hpp"
#include "text_format.hpp"
#include "unique_fd.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

namespace copyoffload::cli {

namespace {

constexpr std::uint64_t probe_blocks = 16;

struct ProbeError {
	std::string what;
};

// mountinfo writes blanks, tabs, newlines and backslashes as \ooo.
std::string unescape_mount_path(const std::string &field)
{
	std::string out;
	for (std::size_t i = 0; i < field.size(); i++) {
		if (field[i] == '\\' && i + 3 < field.size()) {
			int value = 0;
			bool octal = true;
			for (std::size_t k = 1; k <= 3; k++) {
				char c = field[i + k];
				octal = octal && c >= '0' && c <= '7';
				value = value * 8 + (c - '0');
			}
			if (octal) {
				out += static_cast<char>(value);
				i += 3;
				continue;
			}
		}
		out += field[i];
	}
	return out;
}

// The filesystem type and source of the mount `directory` (a canonical
// path) lies on: the mount in /proc/self/mountinfo with the longest mount
// point containing it, the last one where several are stacked. Device
// numbers cannot be used: btrfs subvolumes have their own.
void identify_filesystem(const std::string &directory, int dir, ProbeReport &report)
{
	std::ifstream mountinfo("/proc/self/mountinfo");
	std::string line;
	std::size_t best = 0;
	while (std::getline(mountinfo, line)) {
		std::istringstream fields(line);
		std::string id, parent, device, root, mount_point, field, type, source;
		fields >> id >> parent >> device >> root >> mount_point;
		while (fields >> field && field != "-") {
		}
		fields >> type >> source;
		std::string point = unescape_mount_path(mount_point);
		bool contains = point == "/" || directory == point ||
				directory.starts_with(point + "/");
		if (contains && point.size() >= best) {
			best = point.size();
			report.filesystem = type;
			report.source = unescape_mount_path(source);
		}
	}
	if (report.filesystem.empty()) {
		struct statfs fs{};
		if (::fstatfs(dir, &fs) == 0) {
			report.filesystem = fmt::format("magic 0x{:x}",
							static_cast<unsigned long>(fs.f_type));
		}
	}
}

// A file in `dir` that no one else can see and that vanishes when closed.
UniqueFd scratch_file(int dir)
{
	UniqueFd fd(::openat(dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
	if (fd) {
		return fd;
	}
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
		throw ProbeError{"cannot create a scratch file: " + describe_errno(errno)};
	}
	// No O_TMPFILE here: a named file, unlinked at once.
	for (int attempt = 0; attempt < 100; attempt++) {
		std::string name = fmt::format(".copyoffload-probe.{}.{}", ::getpid(), attempt);
		fd = UniqueFd(::openat(dir, name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
		if (fd) {
			::unlinkat(dir, name.c_str(), 0);
			return fd;
		}
		if (errno != EEXIST) {
			break;
		}
	}
	throw ProbeError{"cannot create a scratch file: " + describe_errno(errno)};
}

std::vector<unsigned char> probe_pattern(std::size_t size)
{
	std::vector<unsigned char> bytes(size);
	std::uint32_t x = 0x12345678;
	for (auto &byte : bytes) {
		x = x * 1103515245u + 12345u;
		byte = static_cast<unsigned char>(x >> 16);
	}
	return bytes;
}

void write_all(int fd, const std::vector<unsigned char> &bytes)
{
	std::size_t done = 0;
	while (done < bytes.size()) {
		ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done,
				     static_cast<off_t>(done));
		if (n <= 0) {
			throw ProbeError{"cannot write the scratch source: " +
					 describe_errno(n < 0 ? errno : EIO)};
		}
		done += static_cast<std::size_t>(n);
	}
	if (::fsync(fd) != 0) {
		throw ProbeError{"cannot sync the scratch source: " + describe_errno(errno)};
	}
}

bool same_data(int fd, const std::vector<unsigned char> &expected, std::size_t length)
{
	std::vector<unsigned char> actual(length);
	std::size_t done = 0;
	while (done < length) {
		ssize_t n = ::pread(fd, actual.data() + done, length - done, static_cast<off_t>(done));
		if (n <= 0) {
			return false;
		}
		done += static_cast<std::size_t>(n);
	}
	return std::memcmp(actual.data(), expected.data(), length) == 0;
}

// Bytes of [0, length) in extents FIEMAP flags as shared; none without
// FIEMAP.
std::optional<std::uint64_t> shared_bytes(int fd, std::uint64_t length)
{
	constexpr unsigned batch = 64;
	std::vector<unsigned char> buffer(sizeof(fiemap) + batch * sizeof(fiemap_extent));
	auto *map = reinterpret_cast<fiemap *>(buffer.data());
	std::uint64_t shared = 0;
	std::uint64_t start = 0;
	while (start < length) {
		std::memset(buffer.data(), 0, buffer.size());
		map->fm_start = start;
		map->fm_length = length - start;
		map->fm_flags = FIEMAP_FLAG_SYNC;
		map->fm_extent_count = batch;
		if (::ioctl(fd, FS_IOC_FIEMAP, map) != 0) {
			return std::nullopt;
		}
		if (map->fm_mapped_extents == 0) {
			break;
		}
		bool last = false;
		for (unsigned i = 0; i < map->fm_mapped_extents; i++) {
			const fiemap_extent &extent = map->fm_extents[i];
			std::uint64_t begin = std::max<std::uint64_t>(extent.fe_logical, start);
			std::uint64_t end = std::min<std::uint64_t>(
				extent.fe_logical + extent.fe_length, length);
			if ((extent.fe_flags & FIEMAP_EXTENT_SHARED) != 0 && end > begin) {
				shared += end - begin;
			}
			start = extent.fe_logical + extent.fe_length;
			last = (extent.fe_flags & FIEMAP_EXTENT_LAST) != 0;
		}
		if (last) {
			break;
		}
	}
	return shared;
}

std::string shared_text(const std::optional<std::uint64_t> &shared, std::uint64_t length)
{
	if (!shared) {
		return "extent sharing unknown (no FIEMAP)";
	}
	if (*shared == length) {
		return "shares extents with the source";
	}
	if (*shared == 0) {
		return "data copied, no extents shared";
	}
	return fmt::format("{} of {} bytes share extents", *shared, length);
}

const char *mechanism(copyoffload_method method)
{
	switch (method) {
	case COPYOFFLOAD_METHOD_CLONE: return "FICLONERANGE";
	case COPYOFFLOAD_METHOD_COPY_FILE_RANGE: return "copy_file_range(2)";
	case COPYOFFLOAD_METHOD_READ_WRITE: return "pread/pwrite";
	default: return copyoffload_method_name(method);
	}
}

// Runs one method's real backend over the probe range into a new scratch
// file and says what happened.
MethodVerdict try_backend(CopyBackend &backend, int dir, int source,
			  const std::vector<unsigned char> &data, std::uint64_t length)
{
	MethodVerdict verdict{.method = copyoffload_method_name(backend.method())};
	const char *how = mechanism(backend.method());
	UniqueFd destination = scratch_file(dir);
	BackendProgress progress = backend.copy_slice(CopyRange{
		.source = source,
		.destination = destination.get(),
		.source_offset = 0,
		.destination_offset = 0,
		.length = length,
	});
	if (progress.error != 0 || progress.bytes != length) {
		int error = progress.error != 0 ? progress.error : EIO;
		bool refused = progress.bytes == 0 && backend.is_unsupported(error);
		verdict.result = refused ? "no" : "error";
		verdict.detail = refused ? fmt::format("{} refused: {}", how, describe_errno(error))
					 : fmt::format("{} failed after {} bytes: {}", how,
						       progress.bytes, describe_errno(error));
		return verdict;
	}
	if (!same_data(destination.get(), data, length)) {
		verdict.result = "error";
		verdict.detail = fmt::format("{} reported success, but the copy differs from "
					     "the source", how);
		return verdict;
	}
	verdict.shared_bytes = shared_bytes(destination.get(), length);
	verdict.result = "yes";
	verdict.detail = fmt::format("{}: {}", how, shared_text(verdict.shared_bytes, length));
	return verdict;
}

// The whole engine, as copyoffloadd runs it, on an unaligned range: the
// planner's split and the fallbacks decide what each part uses.
EngineTrial try_engine(int dir, int source, const std::vector<unsigned char> &data,
		       std::uint64_t length)
{
	UniqueFd destination = scratch_file(dir);
	copyoffload_copy_request request{};
	request.length = length;
	request.methods = COPYOFFLOAD_METHODS_ALL;
	CopyOutcome outcome = execute_copy(request, source, destination.get(), {});
	const CopyResult &result = outcome.result;
	EngineTrial trial{
		.length = length,
		.status = result.status,
		.bytes_done = result.bytes_done,
		.clone = result.bytes_by_method[COPYOFFLOAD_METHOD_CLONE],
		.copy_file_range = result.bytes_by_method[COPYOFFLOAD_METHOD_COPY_FILE_RANGE],
		.device = result.bytes_by_method[COPYOFFLOAD_METHOD_DEVICE],
		.read_write = result.bytes_by_method[COPYOFFLOAD_METHOD_READ_WRITE],
	};
	if (result.status == 0) {
		trial.data_verified = same_data(destination.get(), data, length);
		trial.shared_bytes = shared_bytes(destination.get(), length);
	}
	return trial;
}

void probe_directory(const std::string &directory, int dir, ProbeReport &report)
{
	identify_filesystem(directory, dir, report);
	UniqueFd source = scratch_file(dir);
	struct stat status{};
	if (::fstat(source.get(), &status) != 0) {
		throw ProbeError{"cannot inspect a scratch file: " + describe_errno(errno)};
	}
	report.block_size = status.st_blksize > 0 ? static_cast<std::uint64_t>(status.st_blksize)
						  : 4096;
	// Block-aligned for the methods; the engine's range ends 1000 bytes
	// into a block, one block before the source's end.
	const std::uint64_t method_length = probe_blocks * report.block_size;
	const std::uint64_t engine_length = method_length + 1000;
	std::vector<unsigned char> data =
		probe_pattern(static_cast<std::size_t>(engine_length + report.block_size));
	write_all(source.get(), data);

	CloneBackend clone;
	CopyFileRangeBackend copy_file_range;
	ReadWriteBackend read_write;
	report.methods.push_back(try_backend(clone, dir, source.get(), data, method_length));
	report.methods.push_back(
		try_backend(copy_file_range, dir, source.get(), data, method_length));
	report.methods.push_back({.method = "device",
				  .result = "no",
				  .detail = "device copy works between block devices (raw volumes), "
					    "not files: probe a device"});
	report.methods.push_back(try_backend(read_write, dir, source.get(), data, method_length));
	report.engine = try_engine(dir, source.get(), data, engine_length);
}

void describe_device(const std::string &path, ProbeReport &report)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
	if (!fd) {
		throw ProbeError{"cannot open it: " + describe_errno(errno)};
	}
	device::DeviceProbe probe = device::probe_block_device(fd.get());
	if (!probe.error.empty()) {
		throw ProbeError{probe.error};
	}
	const std::string elsewhere = "copies are made between files: probe a directory of "
				      "the filesystem on this device";
	for (const char *method : {"clone", "copy_file_range"}) {
		report.methods.push_back({.method = method, .result = "n/a", .detail = elsewhere});
	}
	report.methods.push_back({.method = "device",
				  .result = probe.device_copy ? "yes" : "no",
				  .detail = probe.detail});
	report.methods.push_back({.method = "read_write",
				  .result = "n/a",
				  .detail = "copies what the device does not (a head or tail "
					    "that is not whole blocks, refused commands); not "
					    "tried: the probe never writes to a device"});
	for (const auto &[name, value] : probe.facts) {
		if (name == "logical block size") {
			report.block_size = std::stoull(value);
		}
	}
	report.device = DeviceReport{.copy = probe.device_copy,
				     .detail = std::move(probe.detail),
				     .facts = std::move(probe.facts)};
}

} // namespace

ProbeReport probe(const std::string &path)
{
	ProbeReport report{.path = path};
	try {
		struct stat status{};
		if (::stat(path.c_str(), &status) != 0) {
			throw ProbeError{"cannot inspect it: " + describe_errno(errno)};
		}
		// A symbolic link is probed where it leads: its target's
		// directory may be on another filesystem than the link's.
		std::unique_ptr<char, decltype(&std::free)> resolved(::realpath(path.c_str(), nullptr),
								    &std::free);
		const std::string target = resolved ? resolved.get() : path;
		if (S_ISBLK(status.st_mode)) {
			report.kind = "block device";
			describe_device(path, report);
			return report;
		}
		std::string directory = target;
		if (S_ISREG(status.st_mode)) {
			report.kind = "file";
			auto slash = target.rfind('/');
			directory = slash == std::string::npos ? "."
				    : slash == 0		   ? "/"
							   : target.substr(0, slash);
		} else if (S_ISDIR(status.st_mode)) {
			report.kind = "directory";
		} else {
			throw ProbeError{"not a directory, regular file or block device"};
		}
		UniqueFd dir(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (!dir) {
			throw ProbeError{fmt::format("cannot open {}: {}", directory,
						     describe_errno(errno))};
		}
		std::unique_ptr<char, decltype(&std::free)> canonical(
			::realpath(directory.c_str(), nullptr), &std::free);
		probe_directory(canonical ? canonical.get() : directory, dir.get(), report);
	} catch (const ProbeError &e) {
		report.error = e.what;
	}
	return report;
}

std::string probe_table(const ProbeReport &report)
{
	std::string out = fmt::format("path:        {}\n", report.path);
	if (!report.kind.empty()) {
		out += fmt::format("kind:        {}\n", report.kind);
	}
	if (!report.filesystem.empty()) {
		out += fmt::format("filesystem:  {}{}, block size {}\n", report.filesystem,
				   report.source.empty() ? "" : " on " + report.source,
				   report.block_size);
	}
	if (report.device) {
		for (const auto &[name, value] : report.device->facts) {
			out += fmt::format("{:<13}{}\n", name + ":", value);
		}
	}
	if (!report.error.empty()) {
		return out + fmt::format("error:       {}\n", report.error);
	}
	out += fmt::format("\n{:<16} {:<6} {}\n", "METHOD", "WORKS", "WHAT IT DID");
	for (const MethodVerdict &verdict : report.methods) {
		out += fmt::format("{:<16} {:<6} {}\n", verdict.method, verdict.result,
				   verdict.detail);
	}
	if (report.engine) {
		const EngineTrial &e = *report.engine;
		out += fmt::format("\nengine: copying {} bytes (an unaligned range) as copyoffloadd "
				   "would: {}\n",
				   e.length,
				   e.status == 0 ? "done" : "failed: " + describe_errno(e.status));
		out += fmt::format("        clone={} copy_file_range={} device={} read_write={}; "
				   "{}; {}\n",
				   e.clone, e.copy_file_range, e.device, e.read_write,
				   e.data_verified ? "data verified" : "DATA NOT VERIFIED",
				   shared_text(e.shared_bytes, e.length));
	}
	return out;
}

std::string probe_json(const ProbeReport &report)
{
	auto optional_number = [](const std::optional<std::uint64_t> &value) {
		return value ? fmt::format("{}", *value) : std::string("null");
	};
	std::string out = fmt::format(
		"{{\"path\": {}, \"kind\": {}, \"filesystem\": {}, \"source\": {}, "
		"\"block_size\": {}, \"error\": {}, \"methods\": [",
		json_string(report.path), json_string(report.kind), json_string(report.filesystem),
		json_string(report.source), report.block_size,
		report.error.empty() ? "null" : json_string(report.error));
	for (std::size_t i = 0; i < report.methods.size(); i++) {
		const MethodVerdict &v = report.methods[i];
		out += fmt::format("{}\n  {{\"method\": {}, \"result\": {}, \"detail\": {}, "
				   "\"shared_bytes\": {}}}",
				   i == 0 ? "" : ",", json_string(v.method), json_string(v.result),
				   json_string(v.detail), optional_number(v.shared_bytes));
	}
	out += "\n], \"device\": ";
	if (report.device) {
		out += fmt::format("{{\"copy\": {}, \"detail\": {}, \"facts\": {{",
				   report.device->copy ? "true" : "false",
				   json_string(report.device->detail));
		for (std::size_t i = 0; i < report.device->facts.size(); i++) {
			const auto &[name, value] = report.device->facts[i];
			out += fmt::format("{}\n  {}: {}", i == 0 ? "" : ",", json_string(name),
					   json_string(value));
		}
		out += "}}";
	} else {
		out += "null";
	}
	out += ", \"engine\": ";
	if (report.engine) {
		const EngineTrial &e = *report.engine;
		out += fmt::format("{{\"length\": {}, \"status\": {}, \"bytes_done\": {}, "
				   "\"bytes_by_method\": {{\"clone\": {}, \"copy_file_range\": {}, "
				   "\"device\": {}, \"read_write\": {}}}, \"data_verified\": {}, "
				   "\"shared_bytes\": {}}}",
				   e.length, json_string(errno_name(e.status)), e.bytes_done,
				   e.clone, e.copy_file_range, e.device, e.read_write,
				   e.data_verified ? "true" : "false",
				   optional_number(e.shared_bytes));
	} else {
		out += "null";
	}
	return out + "}\n";
}

} // namespace copyoffload::cli
