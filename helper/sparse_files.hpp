// Holes: what the source has in a range, and how the destination gets a
// hole where the source has one. Copying a hole as data would allocate
// it (copy_file_range on ext4 does), so the engine asks where the data is
// (SEEK_HOLE/SEEK_DATA) and copies only that; where the source has a
// hole, it punches one in the destination if the destination has bytes
// there. A hole past the destination's end needs nothing, unless nothing
// written after it makes the file long enough: a request whose done bytes
// end in a hole makes the destination as long as a write of them would,
// once, when it is answered (settle_trailing_hole).
#pragma once

#include <cerrno>
#include <cstdint>

namespace copyoffload {

class SparseFiles {
public:
	virtual ~SparseFiles() = default;

	struct Region {
		std::uint64_t length = 0; // at least 1, at most the limit asked for
		bool hole = false;
	};

	// The region of the source starting at `offset`: data, or a hole of
	// at most `limit` bytes. Where the source cannot tell (or `offset` is
	// at or past its end), data: copying it then says what is there.
	virtual Region region_at(int source, std::uint64_t offset, std::uint64_t limit) = 0;

	// Makes what the destination has of [offset, offset + length) read
	// as zeros without writing data; does not change its size. 0,
	// EOPNOTSUPP when it cannot be done without writing (the caller then
	// copies the zeros as data), or the error.
	virtual int make_hole(int destination, std::uint64_t offset, std::uint64_t length) = 0;

	// Makes the destination at least `end` bytes long, never shorter than
	// it was, as a write ending there would. 0 or the error; `size` is
	// the destination's size afterwards (what it is, on error).
	virtual int extend_to(int destination, std::uint64_t end, std::uint64_t &size) = 0;
};

// Every source is all data: for backends that are not real files (tests)
// and for a copy that must not look for holes.
class DenseFiles final : public SparseFiles {
public:
	Region region_at(int, std::uint64_t, std::uint64_t limit) override
	{
		return {limit, false};
	}
	// Never asked: region_at finds no hole.
	int make_hole(int, std::uint64_t, std::uint64_t) override { return EOPNOTSUPP; }
	int extend_to(int, std::uint64_t end, std::uint64_t &size) override
	{
		size = end;
		return 0;
	}
};

// lseek(SEEK_HOLE/SEEK_DATA), fallocate(PUNCH_HOLE), and to extend, a
// one-block allocation (or one zero byte) just before the end: that grows
// the file atomically to exactly the end and never shrinks it, where
// ftruncate could undo a concurrent write beyond it.
class RealSparseFiles final : public SparseFiles {
public:
	Region region_at(int source, std::uint64_t offset, std::uint64_t limit) override;
	int make_hole(int destination, std::uint64_t offset, std::uint64_t length) override;
	int extend_to(int destination, std::uint64_t end, std::uint64_t &size) override;
};

} // namespace copyoffload
