// C interface of libalign_spm, a tiny shared library around SentencePiece. The engine loads it
// with dlopen(RTLD_LOCAL | RTLD_DEEPBIND) instead of linking SentencePiece: Debian's
// libsentencepiece exports its own embedded copy of protobuf, which clashes with the libprotobuf
// that LibTorch loads (a segfault at start-up in any process holding both). Loaded this way,
// SentencePiece binds to its own copy and LibTorch's stays untouched.
#pragma once

#include <stddef.h>
#include <stdint.h>

extern "C" {

//! Loads a tokenizer.model; on failure returns null and writes a message into err.
void* align_spm_load(const char* path, char* err, size_t err_len);
void align_spm_free(void* model);
//! Encodes text; *ids, *begins, *ends are malloc'ed arrays of *n entries (free with align_spm_free_buffer).
int align_spm_encode(void* model, const char* text, size_t len, int32_t** ids, uint32_t** begins,
                     uint32_t** ends, size_t* n);
//! Decodes ids into a malloc'ed NUL-terminated string (free with align_spm_free_buffer).
char* align_spm_decode(void* model, const int32_t* ids, size_t n);
void align_spm_free_buffer(void* buffer);
int32_t align_spm_size(void* model);
//! The piece for an id as a malloc'ed string (free with align_spm_free_buffer).
char* align_spm_id_to_piece(void* model, int32_t id);
int32_t align_spm_piece_to_id(void* model, const char* piece);
int align_spm_is_control(void* model, int32_t id);
int align_spm_is_unknown(void* model, int32_t id);
//! which: 0 bos, 1 eos, 2 unk, 3 pad.
int32_t align_spm_special_id(void* model, int which);

}  // extern "C"
