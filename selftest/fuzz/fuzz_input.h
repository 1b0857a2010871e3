/*
 * The byte stream every copyoffload fuzz target consumes, and the writer
 * make_seeds uses to produce it. Plain C, so that the C targets and the C++
 * target share one definition.
 *
 * Reading past the end yields zeros and an empty span, never an error: any
 * byte string is a valid input, which is what libFuzzer wants.
 */
#ifndef COPYOFFLOAD_FUZZ_INPUT_H
#define COPYOFFLOAD_FUZZ_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fuzz_input {
	const uint8_t *data;
	size_t size;
};

static inline bool fuzz_input_empty(const struct fuzz_input *in)
{
	return in->size == 0;
}

static inline uint8_t fuzz_u8(struct fuzz_input *in)
{
	uint8_t v = 0;

	if (in->size > 0) {
		v = in->data[0];
		in->data++;
		in->size--;
	}
	return v;
}

static inline uint16_t fuzz_u16(struct fuzz_input *in)
{
	uint16_t lo = fuzz_u8(in);

	return (uint16_t)(lo | (fuzz_u8(in) << 8));
}

static inline uint64_t fuzz_u64(struct fuzz_input *in)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < 8; i++) {
		v |= (uint64_t)fuzz_u8(in) << (8 * i);
	}
	return v;
}

/* Up to `wanted` bytes (fewer at the end of the input); *got says how many. */
static inline const uint8_t *fuzz_bytes(struct fuzz_input *in, size_t wanted,
					size_t *got)
{
	const uint8_t *p = in->data;

	*got = wanted < in->size ? wanted : in->size;
	in->data += *got;
	in->size -= *got;
	return p;
}

/* A length-prefixed (u16) byte string, capped at `max`. */
static inline const uint8_t *fuzz_blob(struct fuzz_input *in, size_t max,
				       size_t *got)
{
	size_t wanted = fuzz_u16(in);

	return fuzz_bytes(in, wanted < max ? wanted : max, got);
}

/* --- writing inputs (seed corpora) ------------------------------------ */

struct fuzz_output {
	uint8_t bytes[32768]; /* a STATS_REPLY seed is over 13 KiB */
	size_t size;
};

static inline void fuzz_put_u8(struct fuzz_output *out, uint8_t v)
{
	if (out->size >= sizeof(out->bytes)) {
		fprintf(stderr, "fuzz_output: seed larger than %zu bytes\n",
			sizeof(out->bytes));
		abort();
	}
	out->bytes[out->size++] = v;
}

static inline void fuzz_put_u16(struct fuzz_output *out, uint16_t v)
{
	fuzz_put_u8(out, (uint8_t)v);
	fuzz_put_u8(out, (uint8_t)(v >> 8));
}

static inline void fuzz_put_u64(struct fuzz_output *out, uint64_t v)
{
	unsigned i;

	for (i = 0; i < 8; i++) {
		fuzz_put_u8(out, (uint8_t)(v >> (8 * i)));
	}
}

static inline void fuzz_put_bytes(struct fuzz_output *out, const uint8_t *p,
				  size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		fuzz_put_u8(out, p[i]);
	}
}

static inline void fuzz_put_blob(struct fuzz_output *out, const uint8_t *p,
				 size_t n)
{
	fuzz_put_u16(out, (uint16_t)n);
	fuzz_put_bytes(out, p, n);
}

/*
 * Seed corpora come from the targets themselves, made with the protocol's
 * encoders: run a target with COPYOFFLOAD_FUZZ_WRITE_SEEDS=DIR and its
 * LLVMFuzzerInitialize writes its seeds into DIR and exits.
 */
#define FUZZ_WRITE_SEEDS_VARIABLE "COPYOFFLOAD_FUZZ_WRITE_SEEDS"

static inline void fuzz_write_seed(const char *dir, const char *name,
				   const struct fuzz_output *out)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(out->bytes, 1, out->size, f) != out->size ||
	    fclose(f) != 0) {
		fprintf(stderr, "cannot write seed %s\n", path);
		exit(1);
	}
}

/*
 * libFuzzer symbolizes the functions new inputs reach (NEW_FUNC lines), and
 * the sanitizer runtime then starts llvm-symbolizer and keeps two pipes to
 * it. Targets that count their open descriptors call this before taking
 * their baseline, so that those pipes are part of it.
 */
void __sanitizer_symbolize_pc(void *pc, const char *format, char *out, size_t size)
	__attribute__((weak));

static inline void fuzz_start_symbolizer(void)
{
	char where[128];

	if (__sanitizer_symbolize_pc != NULL) {
		__sanitizer_symbolize_pc(__builtin_return_address(0), "%p %F %L", where,
					 sizeof(where));
	}
}

/* Aborts with a message: a broken oracle must show up as a crash. */
#define FUZZ_CHECK(cond, ...)                                                \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s: ",         \
				__FILE__, __LINE__, #cond);                  \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
			abort();                                             \
		}                                                            \
	} while (0)

#ifdef __cplusplus
}
#endif

#endif
