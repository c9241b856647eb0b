"""The layout of a ctypes struct (a BCC event) as a `struct` module format, so events can travel raw.

`emit(name, event)` with a BCC perf/ring buffer event then costs one bytes() copy in the VM;
the host unpacks whole batches (protocol.decode_structs). A struct this cannot describe (nested
structs, unions, pointers, bit fields) is sent as JSON instead.
"""
import ctypes
import sys

_INTEGER_CODES = set("bBhHiIlLqQnN")
_SIZED = {1: "b", 2: "h", 4: "i", 8: "q"}
_SAME = {"f": "f", "d": "d", "?": "?"}


def _scalar_code(ctype):
    """The standard-size struct code of a simple ctypes type, or None."""
    code = getattr(ctype, "_type_", None)
    if not isinstance(code, str):
        return None
    if code in _INTEGER_CODES:
        sized = _SIZED.get(ctypes.sizeof(ctype))
        return sized and (sized if code.islower() else sized.upper())
    return _SAME.get(code)


def layout_of(struct_type):
    """{"format": ..., "fields": [[name, count, "int" | "text"], ...]} for a flat ctypes struct, else None."""
    if not (isinstance(struct_type, type) and issubclass(struct_type, ctypes.Structure)):
        return None
    if ctypes.sizeof(struct_type) == 0:
        return None  # nothing to unpack: it travels as JSON, {}
    fmt = ["<" if sys.byteorder == "little" else ">"]
    fields, pos = [], 0
    for spec in struct_type._fields_:
        if len(spec) != 2:
            return None  # a bit field
        name, ctype = spec
        offset = getattr(struct_type, name).offset
        if offset < pos:
            return None
        if offset > pos:
            fmt.append(f"{offset - pos}x")
        if issubclass(ctype, ctypes.Array):
            element, count = ctype._type_, ctype._length_
            if element is ctypes.c_char:
                fmt.append(f"{count}s")
                fields.append([name, 1, "text"])
            else:
                code = _scalar_code(element)
                if code is None:
                    return None
                fmt.append(f"{count}{code}")
                fields.append([name, count, "int"])
        elif ctype is ctypes.c_char:
            fmt.append("1s")
            fields.append([name, 1, "text"])
        else:
            code = _scalar_code(ctype)
            if code is None:
                return None
            fmt.append(code)
            fields.append([name, 1, "int"])
        pos = offset + ctypes.sizeof(ctype)
    size = ctypes.sizeof(struct_type)
    if size > pos:
        fmt.append(f"{size - pos}x")
    return {"format": "".join(fmt), "fields": fields}
