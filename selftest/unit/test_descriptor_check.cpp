// Validation of the two descriptors of a COPY request, on real files,
// directories, pipes and sockets.

#include "descriptor_check.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "helper_test_support.hpp"

using namespace copyoffload;
using namespace test_support;

namespace {


const copyoffload_copy_request any_range = copy_request(0, 0, 4096);

void assert_rejected(int source, int destination, const copyoffload_copy_request &r,
		     int status)
{
	auto rejection = check_copy_descriptors(source, destination, r);
	assert_true(rejection.has_value());
	assert_int_equal(rejection->status, status);
	assert_false(rejection->reason.empty());
}

struct Files {
	UniqueFd source;
	UniqueFd destination;
};

Files regular_pair(const TempDir &dir, int source_flags = O_RDONLY,
		   int destination_flags = O_WRONLY)
{
	write_file(dir.file("src"), pattern(100));
	write_file(dir.file("dst"), {});
	return {open_file(dir.file("src"), source_flags),
		open_file(dir.file("dst"), destination_flags)};
}

void test_regular_files_accepted(void **state)
{
	TempDir &dir = temp_dir(state);
	for (int src_mode : {O_RDONLY, O_RDWR}) {
		for (int dst_mode : {O_WRONLY, O_RDWR}) {
			Files f = regular_pair(dir, src_mode, dst_mode);
			assert_false(check_copy_descriptors(f.source.get(), f.destination.get(),
							    any_range).has_value());
		}
	}
	// O_APPEND on the source is harmless: pread ignores it.
	Files f = regular_pair(dir, O_RDONLY | O_APPEND, O_WRONLY | O_TRUNC);
	assert_false(check_copy_descriptors(f.source.get(), f.destination.get(), any_range)
			     .has_value());
}

void test_directory_rejected(void **state)
{
	TempDir &dir = temp_dir(state);
	Files f = regular_pair(dir);
	UniqueFd directory = open_file(dir.path(), O_RDONLY | O_DIRECTORY);
	assert_rejected(directory.get(), f.destination.get(), any_range, EBADF);
	assert_rejected(f.source.get(), directory.get(), any_range, EBADF);
}

void test_pipe_and_socket_rejected(void **state)
{
	TempDir &dir = temp_dir(state);
	Files f = regular_pair(dir);
	int ends[2];
	assert_int_equal(::pipe2(ends, O_CLOEXEC), 0);
	UniqueFd read_end(ends[0]), write_end(ends[1]);
	assert_rejected(read_end.get(), f.destination.get(), any_range, EBADF);
	assert_rejected(f.source.get(), write_end.get(), any_range, EBADF);

	assert_int_equal(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
	UniqueFd a(ends[0]), b(ends[1]);
	assert_rejected(a.get(), f.destination.get(), any_range, EBADF);
	assert_rejected(f.source.get(), b.get(), any_range, EBADF);
}

void test_character_device_rejected(void **state)
{
	TempDir &dir = temp_dir(state);
	Files f = regular_pair(dir);
	UniqueFd null_device = open_file("/dev/null", O_RDWR);
	assert_rejected(null_device.get(), f.destination.get(), any_range, EBADF);
	assert_rejected(f.source.get(), null_device.get(), any_range, EBADF);
}

void test_o_path_rejected(void **state)
{
	TempDir &dir = temp_dir(state);
	Files f = regular_pair(dir);
	UniqueFd source_path = open_file(dir.file("src"), O_PATH);
	UniqueFd destination_path = open_file(dir.file("dst"), O_PATH);
	assert_rejected(source_path.get(), f.destination.get(), any_range, EBADF);
	assert_rejected(f.source.get(), destination_path.get(), any_range, EBADF);
}

void test_access_modes(void **state)
{
	TempDir &dir = temp_dir(state);
	{
		Files f = regular_pair(dir, O_WRONLY, O_WRONLY); // source not readable
		assert_rejected(f.source.get(), f.destination.get(), any_range, EBADF);
	}
	{
		Files f = regular_pair(dir, O_RDONLY, O_RDONLY); // destination read-only
		assert_rejected(f.source.get(), f.destination.get(), any_range, EBADF);
	}
}

void test_append_destination_rejected(void **state)
{
	TempDir &dir = temp_dir(state);
	Files f = regular_pair(dir, O_RDONLY, O_WRONLY | O_APPEND);
	assert_rejected(f.source.get(), f.destination.get(), any_range, EBADF);
	Files g = regular_pair(dir, O_RDONLY, O_RDWR | O_APPEND);
	assert_rejected(g.source.get(), g.destination.get(), any_range, EBADF);
}

void test_invalid_descriptor_rejected(void **state)
{
	TempDir &dir = temp_dir(state);
	Files f = regular_pair(dir);
	UniqueFd closed = open_file(dir.file("src"), O_RDONLY);
	int number = closed.get();
	closed.reset();
	assert_rejected(number, f.destination.get(), any_range, EBADF);
	assert_rejected(f.source.get(), number, any_range, EBADF);
	assert_rejected(-1, f.destination.get(), any_range, EBADF);
}

void test_same_file_overlap(void **state)
{
	TempDir &dir = temp_dir(state);
	write_file(dir.file("f"), pattern(1000));
	UniqueFd reader = open_file(dir.file("f"), O_RDONLY);
	UniqueFd writer = open_file(dir.file("f"), O_WRONLY);
	// Same inode reached through a hard link is still the same file.
	assert_int_equal(::link(dir.file("f").c_str(), dir.file("link").c_str()), 0);
	UniqueFd link_writer = open_file(dir.file("link"), O_RDWR);

	assert_rejected(reader.get(), writer.get(), copy_request(0, 0, 10), EINVAL);
	assert_rejected(reader.get(), writer.get(), copy_request(0, 9, 10), EINVAL);
	assert_rejected(reader.get(), writer.get(), copy_request(9, 0, 10), EINVAL);
	assert_rejected(reader.get(), link_writer.get(), copy_request(100, 150, 100), EINVAL);
	// The same descriptor for both sides.
	assert_rejected(link_writer.get(), link_writer.get(), copy_request(5, 6, 2), EINVAL);

	// Adjacent or distant ranges in one file are fine, as is nothing at all.
	assert_false(check_copy_descriptors(reader.get(), writer.get(), copy_request(0, 10, 10))
			     .has_value());
	assert_false(check_copy_descriptors(reader.get(), writer.get(), copy_request(10, 0, 10))
			     .has_value());
	assert_false(check_copy_descriptors(reader.get(), link_writer.get(),
					    copy_request(0, 500, 500)).has_value());
	assert_false(check_copy_descriptors(reader.get(), writer.get(), copy_request(7, 7, 0))
			     .has_value());
	// Ranges at the very end of off_t do not overflow the overlap test.
	const std::uint64_t end = INT64_MAX;
	assert_rejected(reader.get(), writer.get(), copy_request(end - 10, end - 6, 5), EINVAL);
	assert_false(check_copy_descriptors(reader.get(), writer.get(),
					    copy_request(end - 10, end - 5, 5)).has_value());
}

void test_different_files_may_share_offsets(void **state)
{
	TempDir &dir = temp_dir(state);
	Files f = regular_pair(dir, O_RDONLY, O_RDWR);
	assert_false(check_copy_descriptors(f.source.get(), f.destination.get(),
					    copy_request(0, 0, 1 << 20)).has_value());
}

} // namespace

int main()
{
	const CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_regular_files_accepted, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_directory_rejected, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_pipe_and_socket_rejected, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_character_device_rejected, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_o_path_rejected, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_access_modes, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_append_destination_rejected, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_invalid_descriptor_rejected, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_same_file_overlap, make_temp_dir, remove_temp_dir),
		cmocka_unit_test_setup_teardown(test_different_files_may_share_offsets, make_temp_dir, remove_temp_dir),
	};
	return cmocka_run_group_tests_name("copyoffloadd_descriptor_check", tests, nullptr, nullptr);
}
