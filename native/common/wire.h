/* gpuwire wire format: shared by the client library and the data-plane worker.
 * Declared once in codegen/protocol.txt; codegen/gen.py writes its C form,
 * native/generated/wire_protocol.h (constants, flags, ops, error codes, HELLO
 * extensions, the structs and encoders/decoders of the field-list payloads),
 * and the per-op property table native/generated/wire_props.h.
 * docs/protocol.md is the specification. Everything on the wire is
 * little-endian. Every length read from the wire is checked against the bytes
 * actually received before it is used. */
#ifndef GPUWIRE_WIRE_H
#define GPUWIRE_WIRE_H

#include "../generated/wire_protocol.h"

#endif
