"""Reading a spec: safe YAML with a line for every key, `-o` overrides, errors that point at the line.

`load_spec(path, overrides)` returns a validated `Spec` or raises `SpecError` naming the
file, the key path and the line. Raw dicts exist only here.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from pydantic import BaseModel, ValidationError

from trainables.errors import SpecError, did_you_mean, short
from trainables.spec import reader, wandb
from trainables.spec.checks import check_spec
from trainables.spec.schema import Spec
from trainables.spec.space import ParamError, Space


def _path_str(path: tuple) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


class YamlDoc:
    """A parsed YAML file and the means to point at a place in it."""

    def __init__(self, file: str, text: str):
        self.file = file
        self.data, node = reader.read(text, file=file)
        self.lines = reader.line_map(node)

    def error(self, message: str, path: tuple) -> SpecError:
        line = None
        for i in range(len(path), 0, -1):  # the deepest known ancestor
            if path[:i] in self.lines:
                line = self.lines[path[:i]]
                break
        return SpecError(message, file=self.file, path=_path_str(path) or None, line=line)


def located(e: SpecError, overrides: list[str] | tuple = ()) -> SpecError:
    """e with the line of its key path in its file, where it has none (a check made after parsing: the
    files a spec names, the cluster, the tracking store); e as it is where file or key cannot be found, or
    where an `-o` override set the value (the file's line holds another)."""
    if e.line is not None or not e.file or not e.path:
        return e
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    if any(e.path == k or e.path.startswith((f"{k}.", f"{k}[")) or k.startswith(f"{e.path}.") for k in keys):
        return e
    try:
        doc = YamlDoc(e.file, _read(e.file))
    except SpecError:
        return e
    path = tuple(int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", e.path))
    line = doc.error(e.message, path).line
    return e if line is None else SpecError(e.message, file=e.file, path=e.path, line=line, column=e.column)


# ---- overrides ----------------------------------------------------------------------------

def apply_overrides(data: dict, overrides: list[str], *, file: str) -> dict:
    """`key.path=value` with value parsed as YAML; new keys allowed (validation checks them)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"override {short(item)}: expected key.path=value", file=file, path="-o")
        try:
            value = reader.value(raw, what=f"-o {key.strip()}") if raw.strip() else ""
        except SpecError as e:
            raise SpecError(f"override {short(item)}: the value is not valid: {e.message}", file=file,
                            path=key) from None
        parts = key.strip().split(".")
        if len(parts) > reader.MAX_DEPTH:  # as deep as a spec file may nest
            raise SpecError(f"override {short(item)}: a key path of {len(parts)} parts; a spec nests at most "
                            f"{reader.MAX_DEPTH} deep", file=file, path="-o")
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise SpecError(f"override {short(item)}: {'.'.join(parts[: i + 1])} is a "
                                f"{type(nxt).__name__}, not a mapping", file=file, path=key)
            # a copy on the way down: a mapping reached through a YAML alias (*name) is shared, and
            # overriding one key of it must not change the others that point at it
            node[part] = nxt = dict(nxt)
            node = nxt
        node[parts[-1]] = value
    return data


MAX_PROBLEMS = 10  # listed in one message; the rest counted


# ---- validation ---------------------------------------------------------------------------

def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The known keys of the section a pydantic error location points into."""
    for part in loc[:-1]:
        ann = model.model_fields.get(part) if isinstance(part, str) else None
        if ann is None or not (isinstance(ann.annotation, type) and issubclass(ann.annotation, BaseModel)):
            return []
        model = ann.annotation
    return [info.alias or name for name, info in model.model_fields.items() if not info.exclude]


def _pydantic_error(doc: YamlDoc, exc: ValidationError, model: type[BaseModel] = Spec) -> SpecError:
    msgs = []
    first = None
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {short(loc[-1])}{did_you_mean(loc[-1], _fields_at(model, loc))}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if not loc:  # the spec's own check: it names its keys; the key before ':' is where it points
                key = msg.split(":", 1)[0].split(" and ")[0].strip()
                if key in Spec.model_fields:
                    loc, msg = (key,), msg.removeprefix(f"{key}:").strip()
            elif "input" in err and err["type"] not in ("model_type",):
                msg += f" (got {short(err['input'])})"
        e = doc.error(msg, loc)
        first = first or e
        msgs.append(str(e))
    if len(msgs) > 1:
        more = [f"... and {len(msgs) - MAX_PROBLEMS} more"] if len(msgs) > MAX_PROBLEMS else []
        return SpecError("\n  ".join(["several problems:"] + msgs[:MAX_PROBLEMS] + more))
    return first


def _read(path: str | os.PathLike) -> str:
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise SpecError("no such file" if not p.exists() else "not a file", file=file)
    try:
        if p.stat().st_size > reader.MAX_BYTES:
            raise SpecError(f"the file is {p.stat().st_size:,} bytes; a spec may be at most {reader.MAX_BYTES:,}",
                            file=file)
        data = p.read_bytes()
    except OSError as e:
        raise SpecError(f"cannot read: {e.strerror or e}", file=file) from None
    return reader.decode(data, file=file)


def load_wandb(path: str | os.PathLike) -> wandb.Translation:
    """A W&B sweep config file translated (for `tune convert`); SpecError if it is none, or cannot be."""
    file = str(path)
    doc = YamlDoc(file, _read(path))
    if not wandb.is_wandb(doc.data):
        raise SpecError("not a W&B sweep config (it has no method, metric mapping, early_terminate or run_cap)",
                        file=file)
    translation = wandb.translate(doc.data, doc, default_name=Path(file).stem)
    load_spec(path)  # what `tune run` of the file would say (its lines, its keys)
    return translation


def load_spec(path: str | os.PathLike, overrides: list[str] | tuple = (), *, checks: bool = True) -> Spec:
    """Read, override and validate a spec file. checks=False: the schema only, for a spec saved in a
    sweep folder (read as data: its custom trainable is not imported, its dataset not looked for)."""
    file = str(path)
    text = _read(path)
    return parse_spec(text, file=file, overrides=overrides, checks=checks)


def parse_spec(text: str, *, file: str = "<spec>", overrides: list[str] | tuple = (), checks: bool = True,
               wandb_configs: bool = True) -> Spec:
    """A spec from its text (a W&B sweep config translated, unless wandb_configs=False: a sweep folder's saved
    spec is always ours)."""
    doc = YamlDoc(file, text)
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping of keys (name, dataset, parameters, ...), got {type(data).__name__}",
                        file=file, line=1)
    notes: tuple[str, ...] = ()
    if wandb_configs and wandb.is_wandb(data):  # a W&B sweep config: W&B keys overridden, translated, then ours
        ours = [o for o in overrides if o.partition("=")[0].strip().split(".")[0] not in wandb.TOP]
        data = apply_overrides(data, [o for o in overrides if o not in ours], file=file)
        translation = wandb.translate(data, doc, default_name=Path(file).stem)
        data, notes, overrides = translation.spec, tuple(translation.notes), ours
    data = apply_overrides(data, list(overrides), file=file)
    raw = data.get("parameters", {})
    if not isinstance(raw, dict):
        raise doc.error("expected a mapping of parameter names to values or distributions", ("parameters",))
    try:
        data["parameters"] = Space.parse(raw)
    except ParamError as e:
        raise doc.error(str(e), ("parameters", e.name) + ((e.key,) if e.key is not None else ())) from None
    try:
        spec = Spec(**data)
    except ValidationError as exc:
        raise _pydantic_error(doc, exc) from None
    except TypeError as exc:  # non-string keys
        raise SpecError(f"invalid keys: {exc}", file=file) from None
    spec = spec.model_copy(update={"source": file, "text_hash": hashlib.sha256(text.encode()).hexdigest()[:16],
                                   "notes": notes})
    if checks:
        check_spec(spec, doc)
    return spec


