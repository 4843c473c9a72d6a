"""What is wrong with a data file that cannot be read, said with the file and the line.

`check_data_file` runs before `datasets` reads a local file and catches what `datasets` would report
cryptically or not at all: an empty file, bytes that are not UTF-8 (the JSON reader silently replaces them),
a JSONL file whose lines are not objects, a truncated Parquet file. `explain_read_failure` turns a failure
of `datasets` itself into a message naming the line that broke it.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

from frugalrl.errors import DataError, describe_exception

_CHUNK = 1 << 20


def check_data_file(path: Path, builder: str) -> None:
    """Raise a DataError naming `path` (and the line, or byte offset) if it cannot hold a dataset."""
    if path.stat().st_size == 0:
        raise DataError(f"dataset file {path} is empty; data.path must hold one problem per row")
    if builder == "parquet":
        _check_parquet(path)
        return
    _check_utf8_text(path)
    if path.suffix.lower() == ".jsonl":
        _check_first_jsonl_line(path)


def _check_parquet(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path).metadata  # noqa: B018 - reading the footer is the check
    except Exception as err:
        raise DataError(
            f"dataset file {path} is not a readable Parquet file (truncated or corrupt: "
            f"{describe_exception(err)}); write it again"
        ) from None


def _check_utf8_text(path: Path) -> None:
    """The whole file decodes as UTF-8 and holds something other than whitespace."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset, seen_text = 1, 0, False
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise DataError(f"dataset file {path} is UTF-16 text; save it as UTF-8")
        f.seek(0)
        while chunk := f.read(_CHUNK):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as err:
                bad = offset + err.start
                line += chunk[: err.start].count(b"\n")
                raise DataError(
                    f"dataset file {path} is not UTF-8: line {line} (byte offset {bad}) holds the byte "
                    f"0x{chunk[err.start]:02x}; save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            line += chunk.count(b"\n")
            offset += len(chunk)
            seen_text = seen_text or bool(text.strip())
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(
                f"dataset file {path} is not UTF-8: it ends inside a multi-byte character (byte offset "
                f"{offset}); the file may be truncated"
            ) from None
    if not seen_text:
        raise DataError(f"dataset file {path} holds only whitespace; data.path must hold one problem per row")


def _check_first_jsonl_line(path: Path) -> None:
    with path.open(encoding="utf-8-sig") as f:
        for number, text in enumerate(f, 1):
            if text.strip():
                if not text.lstrip().startswith("{"):
                    raise DataError(
                        f"dataset file {path} line {number} is not a JSON object; each line of a .jsonl file "
                        'must be one object such as {"question": "...", "answer": "..."}'
                    )
                return


def explain_read_failure(path: Path, builder: str, err: Exception) -> DataError:
    """A DataError for a failure of `datasets` to read `path`: the first bad JSON line if there is one,
    else the innermost error of the chain, on one line."""
    if builder == "json":
        found = _first_bad_json_line(path)
        if found is not None:
            return DataError(found)
    return DataError(f"cannot read dataset file {path}: {describe_exception(err)}")


def _first_bad_json_line(path: Path) -> str | None:
    if path.suffix.lower() == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as err:
            return f"dataset file {path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        return None
    with path.open(encoding="utf-8-sig") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                return (
                    f"dataset file {path} line {number} is not valid JSON ({err.msg}, column {err.colno}); "
                    "fix or remove that line"
                )
            if not isinstance(value, dict):
                return f"dataset file {path} line {number} holds a {type(value).__name__}, not a JSON object"
    return None
