#include "scsi_device.hpp"

#include "device_privileges.hpp"

#include <scsi/sg.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace copyoffload::device {

namespace {

constexpr unsigned scsi_status_check_condition = 0x02;
constexpr unsigned unit_attention_retries = 3;

struct Transfer {
	int direction = SG_DXFER_NONE;
	void *data = nullptr;
	std::size_t length = 0;
};

// One command through SG_IO. 0, or an errno and the reason: EOPNOTSUPP when
// the kernel or the device refused the command as such, EAGAIN for UNIT
// ATTENTION (after retries), EIO for everything else that went wrong.
int run_command(int fd, std::span<const std::uint8_t> cdb, Transfer transfer,
		unsigned timeout_ms, std::string &reason)
{
	for (unsigned attempt = 0;; attempt++) {
		std::uint8_t sense[64]{};
		sg_io_hdr_t io{};
		io.interface_id = 'S';
		io.dxfer_direction = transfer.direction;
		io.cmd_len = static_cast<unsigned char>(cdb.size());
		io.mx_sb_len = sizeof(sense);
		io.dxfer_len = static_cast<unsigned>(transfer.length);
		io.dxferp = transfer.data;
		io.cmdp = const_cast<unsigned char *>(cdb.data());
		io.sbp = sense;
		io.timeout = timeout_ms;
		int rc;
		{
			// EXTENDED COPY and RECEIVE COPY RESULTS are not in the
			// kernel's list of commands allowed without it.
			ScopedCapability raw_io(CAP_SYS_RAWIO);
			do {
				rc = ::ioctl(fd, SG_IO, &io);
			} while (rc < 0 && errno == EINTR);
		}
		if (rc < 0) {
			const int error = errno;
			reason = std::string("SG_IO: ") + std::strerror(error);
			if (error == EPERM || error == EACCES) {
				reason += " (EXTENDED COPY needs CAP_SYS_RAWIO: copyoffloadd "
					  "--device-copy)";
				return EOPNOTSUPP;
			}
			return error == ENOTTY || error == EINVAL
				       ? EOPNOTSUPP
				       : error;
		}
		if (io.status == 0 && io.host_status == 0 && (io.driver_status & 0x0f) == 0) {
			return 0;
		}
		if (io.status == scsi_status_check_condition || io.sb_len_wr > 0) {
			auto decoded = parse_sense(std::span<const std::uint8_t>(sense, io.sb_len_wr));
			if (decoded) {
				const int error = sense_errno(*decoded);
				reason = sense_text(*decoded);
				if (error == EAGAIN && attempt < unit_attention_retries) {
					continue;
				}
				return error;
			}
		}
		reason = "SCSI status 0x" + std::to_string(io.status) + ", host status " +
			 std::to_string(io.host_status) + ", driver status " +
			 std::to_string(io.driver_status);
		return EIO;
	}
}

// A command that reads `size` bytes from the device; `what` names it.
Result<std::vector<std::uint8_t>> data_in(int fd, std::span<const std::uint8_t> cdb,
					  std::size_t size, const char *what)
{
	std::vector<std::uint8_t> data(size, 0);
	std::string reason;
	if (int error = run_command(fd, cdb, {SG_DXFER_FROM_DEV, data.data(), data.size()},
				    10000, reason);
	    error != 0) {
		return DeviceError{error, what + (": " + reason)};
	}
	return data;
}

} // namespace

Result<ScsiDesignator> ScsiLogicalUnit::designator()
{
	auto data = data_in(fd_, inquiry_vpd_cdb(scsi_vpd_device_identification, 252), 252,
			    "INQUIRY (VPD 83h)");
	if (!data) {
		return data.error();
	}
	auto designator = parse_naa_designator(data.value());
	if (!designator) {
		return DeviceError{EOPNOTSUPP, "the logical unit has no NAA designator "
					       "(VPD 83h) a copy manager can find it by"};
	}
	return *designator;
}

Result<ScsiCopyParameters> ScsiLogicalUnit::operating_parameters()
{
	auto data = data_in(fd_, receive_copy_operating_parameters_cdb(256), 256,
			    "RECEIVE COPY RESULTS (operating parameters)");
	if (!data) {
		return data.error();
	}
	auto parameters = parse_copy_operating_parameters(data.value());
	if (!parameters) {
		return DeviceError{EOPNOTSUPP, "unusable copy operating parameters"};
	}
	return *parameters;
}

CommandsOutcome ScsiLogicalUnit::extended_copy(const ScsiDesignator &source,
					       const ScsiDesignator &destination,
					       std::uint32_t block_size,
					       std::span<const XcopyCommand> commands)
{
	CommandsOutcome outcome;
	for (const XcopyCommand &command : commands) {
		std::vector<std::uint8_t> list =
			xcopy_parameter_list(source, destination, block_size, command);
		const auto cdb = extended_copy_cdb(static_cast<std::uint32_t>(list.size()));
		outcome.error = run_command(fd_, cdb, {SG_DXFER_TO_DEV, list.data(), list.size()},
					    xcopy_timeout_ms, outcome.reason);
		if (outcome.error != 0) {
			outcome.reason = "EXTENDED COPY: " + outcome.reason;
			return outcome;
		}
		outcome.completed++;
	}
	return outcome;
}

} // namespace copyoffload::device
