/*
 * Every message type of include/copyoffload_protocol.h, as the fuzz targets
 * see it: its decoder and encoder behind one signature, the invariants a
 * decoded message must satisfy, and valid samples for the seed corpora
 * (which every target writes from here, so a new type's samples reach all
 * of them).
 *
 * Adding a message type to the protocol means adding a row in
 * protocol_kinds.c (and a member to union fuzz_message here):
 * fuzz_check_kind_table(), run at the start of every fuzz target, fails
 * until each type the header decodes has one.
 */
#ifndef COPYOFFLOAD_FUZZ_PROTOCOL_KINDS_H
#define COPYOFFLOAD_FUZZ_PROTOCOL_KINDS_H

#include "copyoffload_protocol.h"
#include "fuzz_input.h"

#ifdef __cplusplus
extern "C" {
#endif

union fuzz_message {
	struct copyoffload_hello hello;
	struct copyoffload_hello_reply hello_reply;
	struct copyoffload_copy_request copy;
	struct copyoffload_copy_reply copy_reply;
	struct copyoffload_share share;
	struct copyoffload_release release;
	struct copyoffload_cloned cloned;
	struct copyoffload_stats_request stats;
	struct copyoffload_stats_reply stats_reply;
};

struct fuzz_message_kind {
	unsigned type;
	const char *name;
	enum copyoffload_decode_result (*decode)(const uint8_t *buf, size_t len,
						 union fuzz_message *m);
	/* Returns the size written, 0 if it does not fit in buf_size. */
	size_t (*encode)(uint8_t *buf, size_t buf_size, const union fuzz_message *m);
	/* NULL, or which documented invariant a decoded message breaks. */
	const char *(*broken_invariant)(const union fuzz_message *m);
	/* Fills *m with valid sample `index`; false past the last one. */
	bool (*sample)(size_t index, union fuzz_message *m);
};

extern const struct fuzz_message_kind fuzz_message_kinds[];
extern const size_t fuzz_kind_count;

/* The row of a message type, or NULL. */
const struct fuzz_message_kind *fuzz_kind_for_type(unsigned type);

/*
 * Aborts unless every type the header decodes has a row, and every row's
 * samples are valid messages of its type. Every target runs it first.
 */
void fuzz_check_kind_table(void);

/*
 * What every target's LLVMFuzzerInitialize does first: checks the kind
 * table, then, with FUZZ_WRITE_SEEDS_VARIABLE set, has write_seeds() write
 * the target's seed corpus into that directory and exits.
 */
void fuzz_initialize(void (*write_seeds)(const char *dir));

#ifdef __cplusplus
}
#endif

#endif
