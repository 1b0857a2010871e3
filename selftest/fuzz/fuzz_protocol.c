/*
 * libFuzzer target: the pure decoders of include/copyoffload_protocol.h,
 * every message type (protocol_kinds.c), as the daemon runs them on what
 * clients send and the module and the command-line tool on what the daemon
 * sends.
 *
 * The input is one received packet. Oracles, beyond the sanitizers:
 *   - decode_header accepts a packet only if it has our magic, a known
 *     type, a length field equal to the packet size and within the type's
 *     sizes, a zero reserved word, and (but for HELLO) our version;
 *   - a body decoder accepts only packets decode_header accepts with its
 *     type, and what it accepts satisfies the type's invariants;
 *   - an accepted packet re-encodes to exactly the same bytes: no bit of
 *     an accepted message goes unchecked.
 */
#include "protocol_kinds.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One seed per sample message of every type. */
static void write_seeds(const char *dir)
{
	static union fuzz_message m;
	static struct fuzz_output out;
	size_t i, s;

	for (i = 0; i < fuzz_kind_count; i++) {
		const struct fuzz_message_kind *k = &fuzz_message_kinds[i];

		for (s = 0; k->sample(s, &m); s++) {
			char name[64];

			out.size = k->encode(out.bytes, sizeof(out.bytes), &m);
			snprintf(name, sizeof(name), "%s-%zu", k->name, s);
			fuzz_write_seed(dir, name, &out);
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_initialize(write_seeds);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static union fuzz_message m;
	static uint8_t packet[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	static uint8_t again[COPYOFFLOAD_MAX_MESSAGE_SIZE];
	struct copyoffload_header h;
	enum copyoffload_decode_result header_result;
	size_t i;

	header_result = copyoffload_decode_header(data, size, &h);
	FUZZ_CHECK(copyoffload_decode_result_string(header_result) != NULL, "no string");
	if (header_result == COPYOFFLOAD_DECODE_OK) {
		FUZZ_CHECK(h.magic == COPYOFFLOAD_MAGIC, "magic %#x", (unsigned)h.magic);
		FUZZ_CHECK(h.length == size && size >= copyoffload_message_size(h.type) &&
				   size <= copyoffload_message_max_size(h.type),
			   "length %u, size %zu, type %u", (unsigned)h.length, size,
			   (unsigned)h.type);
		FUZZ_CHECK(h.reserved == 0, "reserved %#x", (unsigned)h.reserved);
		FUZZ_CHECK(fuzz_kind_for_type(h.type) != NULL, "type %u", (unsigned)h.type);
		FUZZ_CHECK(h.type == COPYOFFLOAD_MSG_HELLO ||
				   h.version == COPYOFFLOAD_PROTOCOL_VERSION,
			   "version %u on type %u", (unsigned)h.version, (unsigned)h.type);
	}

	for (i = 0; i < fuzz_kind_count; i++) {
		const struct fuzz_message_kind *k = &fuzz_message_kinds[i];
		const char *broken;
		enum copyoffload_decode_result r;

		memset(&m, 0xa5, sizeof(m)); /* no help from zeroed memory */
		r = k->decode(data, size, &m);
		FUZZ_CHECK(copyoffload_decode_result_string(r) != NULL, "no string");
		if (r != COPYOFFLOAD_DECODE_OK) {
			continue;
		}
		FUZZ_CHECK(header_result == COPYOFFLOAD_DECODE_OK && h.type == k->type,
			   "%s decoder accepted a packet the header check refuses (%s)",
			   k->name, copyoffload_decode_result_string(header_result));
		broken = k->broken_invariant(&m);
		FUZZ_CHECK(broken == NULL, "decoded %s: %s", k->name, broken ? broken : "");

		memcpy(packet, data, size); /* size <= the type's largest here */
		if (k->type == COPYOFFLOAD_MSG_HELLO) {
			/* A HELLO's header version is free (the body
			 * negotiates); the encoder writes max_version there. */
			copyoffload_put16(packet + 4, m.hello.max_version);
		}
		FUZZ_CHECK(k->encode(again, sizeof(again), &m) == size,
			   "%s re-encodes to another size", k->name);
		FUZZ_CHECK(memcmp(packet, again, size) == 0,
			   "%s does not re-encode to the bytes it was decoded from", k->name);
	}
	return 0;
}
