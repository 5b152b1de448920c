"""Office attachments for the SCAN_MACROS tests, made here: nothing is downloaded.

The macro documents are real macro-enabled Word documents (.docm): an OpenXML package
with a VBA project in ``word/vbaProject.bin``, written below as Word writes it (a Compound
File holding MS-OVBA streams), so olevba finds and decompresses the module's source and
olevba and mraptor analyse real code. The clean document is an OpenXML package without
one. All are longer than the 500 bytes below which Rspamd's oletools rule sends nothing.
"""

from __future__ import annotations

import io
import itertools
import struct
import zipfile
from dataclasses import dataclass, field

__all__ = [
    "BENIGN_SOURCE",
    "DANGEROUS_SOURCE",
    "benign_macro",
    "clean_docx",
    "dangerous_macro",
    "macro_docm",
    "vba_project",
]

#: Runs when the document opens (AutoOpen), writes a batch file and executes it: mraptor's
#: A, W and X at once, the classic downloader pattern.
DANGEROUS_SOURCE = (
    "Sub AutoOpen()\r\n"
    "    Dim target As String\r\n"
    '    target = Environ("TEMP") & "\\update.bat"\r\n'
    "    Open target For Output As #1\r\n"
    '    Print #1, "echo preparing report"\r\n'
    "    Close #1\r\n"
    "    Shell target, vbHide\r\n"
    "End Sub\r\n"
)

#: A macro someone has to call by hand and that only shows a message: nothing to refuse.
BENIGN_SOURCE = (
    "Sub ShowGreeting()\r\n"
    '    MsgBox "The quarterly figures are on the second sheet."\r\n'
    "End Sub\r\n"
)


def dangerous_macro(text: str = "Please enable content to see the invoice.") -> bytes:
    return macro_docm(DANGEROUS_SOURCE, text)


def benign_macro(text: str = "Press the button for a greeting.") -> bytes:
    return macro_docm(BENIGN_SOURCE, text)


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/>'
    "</Relationships>"
)


def _document(text: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"
    )


def clean_docx(text: str = "The quarterly figures are attached.") -> bytes:
    """A minimal WordprocessingML package (ECMA-376 part 2): no macros in it."""
    document = _document(text)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as package:
        package.writestr("[Content_Types].xml", _CONTENT_TYPES)
        package.writestr("_rels/.rels", _RELS)
        package.writestr("word/document.xml", document)
    return buffer.getvalue()


# -- a real macro-enabled Word document ---------------------------------------------------------
# A .docm is an OpenXML package whose word/vbaProject.bin is a Compound File (MS-CFB) holding
# the VBA project (MS-OVBA): a PROJECT stream, and a VBA storage with _VBA_PROJECT, dir and
# one stream per module. olefile reads but cannot write such files, so this writes the
# smallest one olevba accepts: version 3 (512-byte sectors), every stream padded to at least
# the 4096-byte mini-stream cutoff so no mini stream is needed, and MS-OVBA compression with
# literal tokens only (a flag byte of 0 before every 8 bytes), which every reader decompresses.

_SECTOR = 512
_FREE, _END, _FAT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
_NONE = 0xFFFFFFFF
_CUTOFF = 4096


def ovba_compress(data: bytes) -> bytes:
    """MS-OVBA 2.4.1 CompressedContainer of literal tokens: 0x01, then chunks of 3584 bytes
    (512 flag bytes would not fit 4096 literals in a chunk's 4096-byte limit)."""
    out = bytearray(b"\x01")
    for start in range(0, len(data), 3584):
        chunk = data[start : start + 3584]
        body = bytearray()
        for token in range(0, len(chunk), 8):
            body += b"\x00" + chunk[token : token + 8]
        # Header: size - 3 in bits 0-11, signature 0b011 in bits 12-14, compressed flag bit 15.
        out += struct.pack("<H", (len(body) + 2 - 3) | 0x3000 | 0x8000) + body
    return bytes(out)


def _record(ident: int, data: bytes) -> bytes:
    return struct.pack("<HI", ident, len(data)) + data


def _dir_stream(project: str, module: str) -> bytes:
    """MS-OVBA 2.3.4.2: the project information, one module record and the terminator."""
    name, wide = module.encode("ascii"), module.encode("utf-16-le")
    info = (
        _record(0x0001, struct.pack("<I", 1))  # PROJECTSYSKIND: 32-bit Windows
        + _record(0x0002, struct.pack("<I", 0x409))  # PROJECTLCID
        + _record(0x0014, struct.pack("<I", 0x409))  # PROJECTLCIDINVOKE
        + _record(0x0003, struct.pack("<H", 1252))  # PROJECTCODEPAGE
        + _record(0x0004, project.encode("ascii"))  # PROJECTNAME
        + _record(0x0005, b"")  # PROJECTDOCSTRING, then its Unicode form
        + _record(0x0040, b"")
        + _record(0x0006, b"")  # PROJECTHELPFILEPATH (two copies)
        + _record(0x003D, b"")
        + _record(0x0007, struct.pack("<I", 0))  # PROJECTHELPCONTEXT
        + _record(0x0008, struct.pack("<I", 0))  # PROJECTLIBFLAGS
        + struct.pack("<HIIH", 0x0009, 4, 1, 0)  # PROJECTVERSION
        + _record(0x000C, b"")  # PROJECTCONSTANTS, then its Unicode form
        + _record(0x003C, b"")
    )
    modules = (
        _record(0x000F, struct.pack("<H", 1))  # PROJECTMODULES: one
        + _record(0x0013, struct.pack("<H", 0xFFFF))  # PROJECTCOOKIE
        + _record(0x0019, name)  # MODULENAME
        + _record(0x0047, wide)  # MODULENAMEUNICODE
        + _record(0x001A, name)  # MODULESTREAMNAME, then its Unicode form
        + _record(0x0032, wide)
        + _record(0x001C, b"")  # MODULEDOCSTRING, then its Unicode form
        + _record(0x0048, b"")
        + _record(0x0031, struct.pack("<I", 0))  # MODULEOFFSET: source at the start
        + _record(0x001E, struct.pack("<I", 0))  # MODULEHELPCONTEXT
        + _record(0x002C, struct.pack("<H", 0xFFFF))  # MODULECOOKIE
        + struct.pack("<HI", 0x0021, 0)  # MODULETYPE: procedural
        + struct.pack("<HI", 0x002B, 0)  # module TERMINATOR
        + struct.pack("<HI", 0x0010, 0)  # dir TERMINATOR
    )
    return info + modules


@dataclass
class _Entry:
    name: str
    kind: int  # 1 storage, 2 stream, 5 root
    data: bytes = b""
    children: list[int] = field(default_factory=list)
    left: int = _NONE
    right: int = _NONE
    child: int = _NONE
    start: int = _END


def _cfb_order(name: str) -> tuple[int, str]:
    """MS-CFB 2.6.4: siblings compare by name length first, then by upper-case name."""
    return (len(name), name.upper())


def _cfb(streams: dict[str, bytes]) -> bytes:
    """An MS-CFB version 3 file with the given streams ("Storage/Stream" paths, one level)."""
    entries = [_Entry("Root Entry", 5)]
    storages: dict[str, int] = {"": 0}
    for path, data in streams.items():
        assert len(data) >= _CUTOFF, path  # no mini stream in this writer
        parent_name, _, name = path.rpartition("/")
        if parent_name not in storages:
            storages[parent_name] = len(entries)
            entries.append(_Entry(parent_name, 1))
            entries[0].children.append(storages[parent_name])
        entries.append(_Entry(name, 2, data))
        entries[storages[parent_name]].children.append(len(entries) - 1)
    for entry in entries:
        # Siblings in CFB order (shorter names first, then by upper case), as a chain of
        # right siblings: a valid search tree, all black.
        ordered = sorted(entry.children, key=lambda i: _cfb_order(entries[i].name))
        if ordered:
            entry.child = ordered[0]
            for this, after in itertools.pairwise(ordered):
                entries[this].right = after
    directory_sectors = -(-len(entries) * 128 // _SECTOR)
    sector = 1 + directory_sectors  # sector 0 is the FAT, then the directory
    chains: list[tuple[int, int]] = []
    for entry in entries:
        if entry.kind == 2:
            count = -(-len(entry.data) // _SECTOR)
            entry.start = sector
            chains.append((sector, count))
            sector += count
    assert sector <= _SECTOR // 4, "one FAT sector maps 128 sectors"
    fat = [_FREE] * (_SECTOR // 4)
    fat[0] = _FAT
    chains.append((1, directory_sectors))
    for first, count in chains:
        for index in range(first, first + count - 1):
            fat[index] = index + 1
        fat[first + count - 1] = _END
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        bytes.fromhex("D0CF11E0A1B11AE1"),
        b"\0" * 16,
        0x003E,
        3,
        0xFFFE,
        9,
        6,
        b"\0" * 6,
        0,
        1,  # FAT sectors
        1,  # first directory sector
        0,
        _CUTOFF,
        _END,  # no mini FAT
        0,
        _END,  # no DIFAT sectors
        0,
    ) + struct.pack("<109I", 0, *([_FREE] * 108))
    directory = bytearray()
    for entry in entries:
        encoded = (entry.name + "\0").encode("utf-16-le")
        directory += struct.pack(
            "<64sHBBIII16sIQQIQ",
            encoded,
            len(encoded),
            entry.kind,
            1,  # black
            entry.left,
            entry.right,
            entry.child,
            b"\0" * 16,
            0,
            0,
            0,
            entry.start,
            len(entry.data),
        )
    directory += b"\0" * (directory_sectors * _SECTOR - len(directory))
    body = bytearray(header) + struct.pack(f"<{_SECTOR // 4}I", *fat) + directory
    for entry in entries:
        if entry.kind == 2:
            body += entry.data + b"\0" * (-len(entry.data) % _SECTOR)
    return bytes(body)


def vba_project(source: str, module: str = "Module1") -> bytes:
    """A vbaProject.bin with one standard module holding ``source`` (VBA as Word saves it)."""
    code = f'Attribute VB_Name = "{module}"\r\n{source}'.encode("cp1252")
    # Comment lines until the compressed module passes the mini-stream cutoff.
    while len(ovba_compress(code)) < _CUTOFF:
        code += b"' -\r\n"
    directory = _dir_stream("Project", module)
    directory += b"\0" * max(0, 3700 - len(directory))  # read past the terminator: never
    project = f'ID="{{00000000-0000-0000-0000-000000000000}}"\r\nModule={module}\r\n'
    project += 'Name="Project"\r\n'
    return _cfb(
        {
            "PROJECT": project.encode("ascii").ljust(_CUTOFF, b"\n"),
            # MS-OVBA 2.3.4.1: Reserved1, Version 0xFFFF (no cached P-code), Reserved2, 3.
            "VBA/_VBA_PROJECT": struct.pack("<HHBH", 0x61CC, 0xFFFF, 0, 0).ljust(_CUTOFF, b"\0"),
            "VBA/dir": ovba_compress(directory),
            f"VBA/{module}": ovba_compress(code),
        }
    )


_DOCM_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/>'
    "</Types>"
)
_DOCM_DOCUMENT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.microsoft.com/office/2006/relationships/'
    'vbaProject" Target="vbaProject.bin"/>'
    "</Relationships>"
)


def macro_docm(source: str, text: str = "Please enable content to see the report.") -> bytes:
    """A macro-enabled Word document (.docm) whose VBA project holds ``source``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", _DOCM_TYPES)
        package.writestr("_rels/.rels", _RELS)
        package.writestr("word/document.xml", _document(text))
        package.writestr("word/_rels/document.xml.rels", _DOCM_DOCUMENT_RELS)
        package.writestr("word/vbaProject.bin", vba_project(source))
    return buffer.getvalue()
