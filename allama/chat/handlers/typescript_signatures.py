"""Functions described as TypeScript-like signatures in a `namespace functions { ... }`,
the way functionary models are shown their tools (a fact of their prompt format)."""

from __future__ import annotations

from typing import Any


def _type(schema: dict[str, Any], level: int) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"Array<{_type(schema.get('items') or {}, level + 1)}>"
    if schema.get("type") == "object":
        pad = "  " * level
        fields = "".join(f"{pad}  {name}: {_type(sub, level + 1)},\n"
                         for name, sub in (schema.get("properties") or {}).items())
        return "{\n" + fields + pad + "}"
    if "enum" in schema:
        return " | ".join(f'"{v}"' for v in schema["enum"])
    return str(schema.get("type", "any"))


def functions_namespace(functions: list[dict[str, Any]], indent: bool) -> str:
    """The namespace for `functions`. `indent` selects the first functionary handler's layout
    (members indented, a newline after the closing line); without it, v1/v2's layout."""
    member = "  " if indent else ""
    field = "    " if indent else ""
    out = ["// Supported function definitions that should be called when necessary.\n", "namespace functions {\n\n"]
    shared: dict[str, Any] = {}
    for f in functions:
        shared.update((f.get("parameters") or {}).get("$defs") or {})
    for name, schema in shared.items():
        if schema.get("type") == "object":
            body = _type(schema, 1)
        elif "enum" in schema:
            body = " | ".join(f'"{v}"' for v in schema["enum"])
        else:
            body = ""
        out.append(f"  type {name} = {body};\n")
    for f in functions:
        parameters = f.get("parameters") or {}
        required = parameters.get("required") or []
        out.append(f"{member}// {f.get('description', '')}\n{member}type {f['name']} = (_: {{\n")
        for name, schema in (parameters.get("properties") or {}).items():
            optional = "" if name in required else "?"
            out.append(f"{field}// {schema.get('description', '')}\n{field}{name}{optional}: {_type(schema, 2)},\n")
        out.append(f"{member}}}) => any;\n\n")
    out.append("} // namespace functions\n" if indent else "} // namespace functions")
    return "".join(out)
