/* Failure templates and signatures (architecture §7): a masked error message (mask.h) becomes a
 * template such as "Connection to <*> refused after <*>", and the template, with the project,
 * the error type and the grouping version, becomes the signature that groups failures.
 *
 * A template depends on its message alone (see the top of template.c): replicas, restarts
 * and replays compute the same signature for the same message whatever came before it.
 * Any change to the rules of mask.c or template.c changes templates, so it must bump
 * PL_GROUPING_VERSION (and keep an alias from the old signatures). */
#ifndef PL_TEMPLATE_H
#define PL_TEMPLATE_H

#include <stddef.h>

/** Version of the masking + template rules; part of every signature. */
#define PL_GROUPING_VERSION 1

/** The single variable token of templates (every mask placeholder becomes this). */
#define PL_TEMPLATE_VAR "<*>"

/** Size of a signature: "sha256:" + 64 hex digits + NUL. */
#define PL_SIGNATURE_SIZE 72

/** Size of a group id: 16 hex digits + NUL. */
#define PL_GROUP_ID_SIZE 17

/** Tokens (words and punctuation) of a message that count; a longer message is templated
 *  from its first PL_TEMPLATE_MAX_TOKENS tokens, so memory stays bounded. */
#define PL_TEMPLATE_MAX_TOKENS 4096

/**
 * @brief Builds the template of a masked message (output of pl_mask_text) into out (outsz
 *        bytes, caller-owned; always NUL-terminated when outsz > 0). @returns 0, or -1 when
 *        the template is cut: out too small (out then holds a prefix cut between tokens) or
 *        more than PL_TEMPLATE_MAX_TOKENS tokens (out holds the template of the first ones),
 *        or when memory ran out (out is then ""). outsz = 3 * strlen(masked) + 1 is enough.
 */
int pl_template_build(const char *masked, char *out, size_t outsz);

/**
 * @brief Masks text (pl_mask_text) and builds its template into out (outsz bytes, caller
 *        owned). Allocates a scratch buffer internally. @returns as pl_template_build.
 */
int pl_template_from_text(const char *text, char *out, size_t outsz);

/**
 * @brief Writes the failure signature: "sha256:" + hex SHA-256 of the grouping version,
 *        project id, error type (or rule name) and template, each length-prefixed so that no
 *        two different tuples hash the same bytes. NULL strings count as "".
 *        @returns 0, or -1 when out of memory (out is then the empty string).
 */
int pl_template_signature(int grouping_version, const char *project_id, const char *error_type,
                          const char *tmpl, char out[PL_SIGNATURE_SIZE]);

/**
 * @brief Writes a short stable id of a template: the first 16 hex digits of its SHA-256.
 */
void pl_template_group_id(const char *tmpl, char out[PL_GROUP_ID_SIZE]);

#endif
