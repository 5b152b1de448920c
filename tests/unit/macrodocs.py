"""Office attachments for the SCAN_MACROS tests, made here: nothing is downloaded.

The macros are VBA source as olevba reads it from a text container (its ``Text`` type:
a file without NUL bytes that no other parser claims is taken as VBA or VBScript source),
so olevba and mraptor analyse real code; the clean document is a real OpenXML (zip)
package without a VBA project. Each is longer than the 500 bytes below which Rspamd's
oletools rule sends nothing.
"""

from __future__ import annotations

import io
import zipfile

__all__ = ["BENIGN_MACRO", "DANGEROUS_MACRO", "clean_docx"]

_PADDING = "' Quarterly report helpers, kept for the finance team.\r\n" * 10

#: Runs when the document opens (AutoOpen), writes a batch file and executes it: mraptor's
#: A, W and X at once, the classic downloader pattern.
DANGEROUS_MACRO = (
    'Attribute VB_Name = "ThisDocument"\r\n'
    "Sub AutoOpen()\r\n"
    "    Dim target As String\r\n"
    '    target = Environ("TEMP") & "\\update.bat"\r\n'
    "    Open target For Output As #1\r\n"
    '    Print #1, "echo preparing report"\r\n'
    "    Close #1\r\n"
    "    Shell target, vbHide\r\n"
    "End Sub\r\n" + _PADDING
).encode("ascii")

#: A macro someone has to call by hand and that only shows a message: nothing to refuse.
BENIGN_MACRO = (
    'Attribute VB_Name = "Greeting_Module"\r\n'
    "Sub ShowGreeting()\r\n"
    '    MsgBox "The quarterly figures are on the second sheet."\r\n'
    "End Sub\r\n" + _PADDING
).encode("ascii")

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


def clean_docx(text: str = "The quarterly figures are attached.") -> bytes:
    """A minimal WordprocessingML package (ECMA-376 part 2): no macros in it."""
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as package:
        package.writestr("[Content_Types].xml", _CONTENT_TYPES)
        package.writestr("_rels/.rels", _RELS)
        package.writestr("word/document.xml", document)
    return buffer.getvalue()
