"""Rule checks of instruction data, one record at a time: what `gpt4llm audit` flags.

Each check returns a short detail (the matched words) or None. The patterns are plain regular
expressions kept here so they can be read and extended in one place:

* `empty`: the answer is empty or whitespace;
* `no_output`: the whole answer is a placeholder: "N/A", "None", "No output", "<noinput>",
  "<nooutput>", "Not applicable", "-", ... (case, brackets, quotes and a final period ignored);
* `refusal`: the answer refuses or talks about being an AI ("As an AI language model",
  "I'm sorry, but I cannot", "I am unable to provide", "I don't have access to", ...);
* `truncated`: the record says its answer was cut off (`finish_reason: "length"` as `respond`
  writes, or `truncated: true`);
* `unfinished` (a heuristic, never more than a flag): the answer stops mid-sentence: it ends
  with a comma, colon, semicolon, hyphen or an open bracket, or it has at least
  `min_words` words and ends in a letter or digit while its last line is prose (not a list
  item, table row, heading, code or a line ending in a closing quote or bracket);
* `needs_media`: the instruction or input refers to something a text model cannot see:
  "this image", "the following graph", "the attached", "the given URL", "this video",
  "listen to"... ("the given document/file/PDF" only when the input is empty: otherwise the
  text is usually there).
"""

from __future__ import annotations

import re

_PLACEHOLDERS = {
    "n/a",
    "na",
    "n.a",
    "none",
    "no output",
    "no input",
    "noinput",
    "nooutput",
    "no answer",
    "no response",
    "null",
    "nil",
    "nothing",
    "not applicable",
    "-",
    "--",
    "",
    "empty",
    "no output required",
    "output",
}
_STRIP = " \t\r\n.!\"'`()[]<>{}*_"


def _any(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


_CANNOT_DO = _any(
    "fulfill",
    "comply with",
    "assist with",
    "help with",
    "provide",
    "complete",
    "answer",
    "perform",
    "generate",
    "create",
    "browse",
    "access",
    "view",
    "process",
)
_REFUSAL = re.compile(
    "|".join(
        [
            # "As an AI language model, ..." (not "as an AI researcher")
            (
                r"\bas an? (?:ai|artificial intelligence)(?: language)?(?: model| assistant)?"
                r"(?=[,.;:]| i\b| (?:model|assistant)\b)"
            ),
            r"\bas a (?:large )?language model\b",
            r"\bi(?:'m| am) (?:just |only )?an? (?:ai|language model|artificial intelligence)\b",
            # "I'm sorry, but I cannot ..." at the start
            r"^\W*(?:i(?:'m| am) sorry|sorry|i apologi[sz]e|unfortunately)\b[^.!?\n]{0,40}\bi "
            + _any("can ?not", "can't", "am unable", "am not able", "won't", "do not", "don't")
            + r"\b",
            r"\bi(?: can ?not| can't|(?:'m| am) (?:unable|not able) to| won't be able to) "
            + _CANNOT_DO
            + r"\b",
            r"\bi (?:do not|don't) have "
            + _any(
                "access to",
                "the ability to",
                "personal (?:opinions|experiences|feelings)",
                "real-time",
            )
            + r"\b",
            r"\b(?:openai|chatgpt)(?:'s)? (?:content |use case )?polic",
        ]
    ),
    re.IGNORECASE,
)

_MEDIA = (
    _any(
        "image",
        "picture",
        "photo",
        "photograph",
        "graph",
        "chart",
        "diagram",
        "figure",
        "video",
        "audio",
        "recording",
        "clip",
        "screenshot",
        "drawing",
        "map",
        "plot",
        "song",
        "podcast",
        "illustration",
        "painting",
        "sketch",
        "infographic",
    )
    + "s?"
)
_DOCS = _any("file", "document", "pdf", "spreadsheet", "attachment", "excel sheet", "csv") + "s?"
_POINTER = "(?:(?:the|this|these|that) )?" + _any(
    "this",
    "these",
    "the",
    "that",
    "following",
    "attached",
    "above",
    "below",
    "given",
    "provided",
    "accompanying",
    "shown",
    "uploaded",
    "linked",
    "enclosed",
)
_NEEDS_MEDIA = re.compile(
    "|".join(
        [
            rf"\b{_POINTER} {_MEDIA}\b",
            r"\b(?:the )?attached\b",
            (
                r"\b(?:this|the|that|following|given|provided|above|below) "
                r"(?:url|link|web ?page|website|site|hyperlink)s?\b"
            ),
            r"\b(?:visit|open|go to|watch|listen to|click)\b\s+(?:the|this|that|https?://)",
            r"\bin the (?:video|audio|recording|picture|image|photo)\b",
        ]
    ),
    re.IGNORECASE,
)
_NEEDS_DOC = re.compile(rf"\b{_POINTER} {_DOCS}\b", re.IGNORECASE)

_ENDS_OPEN = (",", ":", ";", "-", "(", "[", "{", "–", "—", "/", "&", "+", "=")
_LIST_OR_CODE = re.compile(r"^\s*(?:[-*•+]|\d+[.)]|[a-zA-Z][.)]|#+|\||>|```)|[;{}()\]]\s*$")


def is_placeholder(output: str) -> str | None:
    text = " ".join(output.split()).strip(_STRIP).lower()
    if output.strip() and text in _PLACEHOLDERS:
        return output.strip()[:40]
    return None


def refusal(output: str) -> str | None:
    m = _REFUSAL.search(output)
    return m.group(0).strip() if m else None


def needs_media(instruction: str, input: str) -> str | None:
    for text in (instruction, input):
        m = _NEEDS_MEDIA.search(text or "")
        if m:
            return m.group(0).strip()
    if not (input or "").strip():
        m = _NEEDS_DOC.search(instruction or "")
        if m:
            return m.group(0).strip()
    return None


def truncated(rec: dict) -> str | None:
    if rec.get("finish_reason") == "length":
        return "finish_reason=length"
    if rec.get("truncated") is True:
        return "truncated=true"
    return None


def unfinished(output: str, min_words: int = 20) -> str | None:
    """The heuristic of the module docstring; returns the last few words when it fires."""
    text = output.rstrip()
    if not text or "```" in text:
        return None
    tail = " ".join(text.split()[-4:])
    if text.endswith(_ENDS_OPEN):
        return tail
    if len(text.split()) < min_words or not text[-1].isalnum():
        return None
    last = text.splitlines()[-1]
    if _LIST_OR_CODE.search(last):
        return None
    return tail
