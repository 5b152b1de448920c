"""One Office document in, the olefy reply items out: olevba and mraptor, in a worker.

This runs only inside a worker process (:mod:`roost.services.oletools.worker`), never in
the server itself, because olevba parses whatever an attacker attached and its parsers
can take long or fail in ways nobody planned for. The reply has the shape of olevba's
JSON output (``olevba -j -a``), which Rspamd's ``lua_scanners/oletools.lua`` reads:
a ``MetaInformation`` item, one item for the document (or an ``error`` item), and a
``MetaInformation`` item with olevba's return code.

Beside olevba's own analysis it adds mraptor's verdict as keywords that Rspamd's
``patterns`` turn into symbols: ``mraptor A <word>`` (the macro runs by itself),
``mraptor W <word>`` (it writes to the file system) and ``mraptor X <word>`` (it
executes something). Rspamd passes on only the keywords of ``AutoExec`` and
``Suspicious`` items, so those are their types.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RETURN_ENCRYPTED",
    "RETURN_OK",
    "RETURN_OPEN_ERROR",
    "RETURN_UNEXPECTED",
    "SCRIPT_NAME",
    "analyse",
    "error_reply",
]

#: olevba's return codes that Rspamd's scanner tells apart (olevba.py RETURN_*).
RETURN_OK = 0
RETURN_OPEN_ERROR = 5
RETURN_UNEXPECTED = 8
RETURN_ENCRYPTED = 9
SCRIPT_NAME = "roost-olefy"
#: How many analysis items a reply carries at most: Rspamd reads the reply in 8 KiB
#: pieces and only looks for more while each piece is full, so replies stay small.
MAX_ITEMS = 40
#: Keyword and description lengths kept (a keyword can be a decoded string).
MAX_KEYWORD = 80
MAX_DESCRIPTION = 120


def _meta() -> dict[str, Any]:
    from oletools import olevba

    return {"script_name": SCRIPT_NAME, "version": olevba.__version__, "type": "MetaInformation"}


def _return(code: int) -> dict[str, Any]:
    return {"type": "MetaInformation", "return_code": code}


def error_reply(error: str, message: str, code: int = RETURN_UNEXPECTED) -> list[dict[str, Any]]:
    """A reply that makes Rspamd set OLETOOLS_FAIL: the mail waits, it is not let through.

    The error item must be the second: Rspamd reads the message from ``result[2]``.
    """
    return [
        {"script_name": SCRIPT_NAME, "type": "MetaInformation"},
        {"file": "attachment", "type": "error", "error": error, "message": message[:200]},
        _return(code),
    ]


def _item(kind: str, keyword: str, description: str) -> dict[str, str]:
    return {
        "type": kind,
        "keyword": keyword[:MAX_KEYWORD],
        "description": description[:MAX_DESCRIPTION],
    }


def _raptor(code: str) -> list[dict[str, str]]:
    """mraptor's three findings as analysis items Rspamd's patterns classify."""
    from oletools.mraptor import MacroRaptor

    raptor = MacroRaptor(code)
    raptor.scan()
    found = []
    if raptor.autoexec:
        found.append(
            _item("AutoExec", f"mraptor A {raptor.autoexec_match}", "mraptor: runs by itself")
        )
    if raptor.write:
        found.append(
            _item("Suspicious", f"mraptor W {raptor.write_match}", "mraptor: writes files")
        )
    if raptor.execute:
        found.append(_item("Suspicious", f"mraptor X {raptor.execute_match}", "mraptor: executes"))
    return found


def analyse(data: bytes, name: str = "attachment") -> list[dict[str, Any]]:
    """Parse one document with olevba and judge its macros with mraptor.

    A format olevba does not know is an open error (``RETURN_OPEN_ERROR``), which Rspamd
    treats as a failed scan, as with olefy: an attachment named like an Office document
    that no parser reads is not waved through. Other exceptions propagate; the worker
    turns them into :func:`error_reply`.
    """
    from oletools.olevba import FileOpenError, VBA_Parser

    try:
        parser = VBA_Parser(name, data=data, relaxed=True)
    except FileOpenError as exc:
        return [_meta(), *error_reply("FileOpenError", str(exc))[1:2], _return(RETURN_OPEN_ERROR)]
    try:
        if parser.detect_is_encrypted():
            return [_meta(), {"file": name, "type": parser.type}, _return(RETURN_ENCRYPTED)]
        document: dict[str, Any] = {"file": name, "type": parser.type, "container": None}
        if not parser.detect_macros():
            # No "analysis" key: Rspamd reads an empty analysis with no macros as a
            # broken run and asks again, but a missing one as "no macro found".
            document["macros"] = []
            return [_meta(), document, _return(RETURN_OK)]
        analysis = [
            _item(str(kind), str(keyword), str(description))
            for kind, keyword, description in parser.analyze_macros() or []
        ]
        code = parser.vba_code_all_modules or ""
        analysis = _raptor(code) + analysis
        macros = [
            {"vba_filename": str(vba_name), "ole_stream": str(stream), "code_length": len(text)}
            for _subfile, stream, vba_name, text in parser.extract_all_macros()
        ]
        if not macros:
            macros = [{"vba_filename": name, "ole_stream": "", "code_length": len(code)}]
        document["analysis"] = analysis[:MAX_ITEMS]
        document["macros"] = macros[:MAX_ITEMS]
        return [_meta(), document, _return(RETURN_OK)]
    finally:
        parser.close()
