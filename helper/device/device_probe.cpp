#include "device_probe.hpp"

#include "block_device.hpp"
#include "device_session.hpp"
#include "nvme_device.hpp"
#include "scsi_device.hpp"

#include <cstdio>

namespace copyoffload::device {

namespace {

std::string hex16(unsigned value)
{
	char text[16];
	std::snprintf(text, sizeof(text), "0x%04x", value);
	return text;
}

std::string yes_no(bool value)
{
	return value ? "yes" : "no";
}

void nvme_facts(const BlockDevice &device, int fd, DeviceProbe &probe)
{
	auto ns = NvmeNamespace::open(device, fd, NvmeTransport::automatic);
	if (!ns) {
		probe.facts.emplace_back("nvme identify", ns.error().reason);
		return;
	}
	const NvmeNamespace &n = *ns.value();
	probe.facts.emplace_back("nvme model", n.controller().model);
	probe.facts.emplace_back("nvme firmware", n.controller().firmware);
	probe.facts.emplace_back("nvme nsid", std::to_string(n.nsid()));
	probe.facts.emplace_back("nvme oncs", hex16(n.controller().oncs) + " (Copy: " +
						      yes_no(n.controller().copy_supported()) + ")");
	probe.facts.emplace_back("nvme ocfs", hex16(n.controller().ocfs) + " (format 0: " +
						      yes_no(n.controller().format0_supported()) +
						      ")");
	probe.facts.emplace_back("nvme lba size", std::to_string(n.info().lba_size));
	probe.facts.emplace_back("nvme metadata size", std::to_string(n.info().metadata_size));
	probe.facts.emplace_back("nvme mssrl", std::to_string(n.info().mssrl) + " blocks per range");
	probe.facts.emplace_back("nvme mcl", std::to_string(n.info().mcl) + " blocks per command");
	probe.facts.emplace_back("nvme msrc", std::to_string(n.info().msrc) + " (" +
						      std::to_string(n.info().msrc + 1) +
						      " ranges per command)");
	if (n.support().limits) {
		probe.facts.emplace_back("nvme passthrough", n.transport());
	}
}

void scsi_facts(const BlockDevice &device, int fd, DeviceProbe &probe)
{
	(void)device;
	ScsiLogicalUnit unit(fd);
	auto designator = unit.designator();
	probe.facts.emplace_back("scsi naa designator", designator ? designator->hex()
								   : designator.error().reason);
	auto parameters = unit.operating_parameters();
	if (!parameters) {
		probe.facts.emplace_back("scsi copy parameters", parameters.error().reason);
		return;
	}
	const ScsiCopyParameters &p = parameters.value();
	std::string types;
	for (std::uint8_t type : p.descriptor_types) {
		char text[8];
		std::snprintf(text, sizeof(text), "%s%02xh", types.empty() ? "" : " ", type);
		types += text;
	}
	probe.facts.emplace_back("scsi no list id", yes_no(p.supports_no_list_id));
	probe.facts.emplace_back("scsi max cscd descriptors", std::to_string(p.max_cscd_descriptors));
	probe.facts.emplace_back("scsi max segment descriptors",
				 std::to_string(p.max_segment_descriptors));
	probe.facts.emplace_back("scsi max descriptor list length",
				 std::to_string(p.max_descriptor_list_length));
	probe.facts.emplace_back("scsi max segment length", std::to_string(p.max_segment_length));
	probe.facts.emplace_back("scsi descriptor types", types);
}

} // namespace

DeviceProbe probe_block_device(int fd)
{
	DeviceProbe probe;
	auto device = inspect_block_device(fd);
	if (!device) {
		probe.error = device.error().reason;
		return probe;
	}
	const BlockDevice &d = device.value();
	probe.facts.emplace_back("device", d.sysfs.name);
	probe.facts.emplace_back("kind", std::string(kind_name(d.kind())));
	probe.facts.emplace_back("disk", d.sysfs.disk_name);
	if (d.sysfs.partition) {
		probe.facts.emplace_back("partition start", std::to_string(d.start));
	}
	probe.facts.emplace_back("size", std::to_string(d.size));
	probe.facts.emplace_back("logical block size", std::to_string(d.logical_block_size));
	{
		auto claim = claim_exclusive(fd);
		probe.facts.emplace_back("in use", claim ? std::string("no")
							 : "yes: " + claim.error().reason);
	}
	switch (d.kind()) {
	case DeviceKind::nvme:
		nvme_facts(d, fd, probe);
		break;
	case DeviceKind::scsi:
		scsi_facts(d, fd, probe);
		break;
	case DeviceKind::other:
		break;
	}
	std::string reason;
	auto copier = make_copier(d, fd, d, fd, SessionOptions{}, reason);
	probe.device_copy = copier != nullptr;
	probe.detail = copier ? copier->describe() : reason;
	return probe;
}

} // namespace copyoffload::device
