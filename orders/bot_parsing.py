"""Reading what a customer wrote to the ordering bot. Pure functions, no database.

Hebrew, English and Arabic words; Arabic-Indic and Persian digits count as
digits. Items are chosen as "item x quantity" ("2 x 3": three of item 2), "item quantity"
("3 2": two of item 3), several at once separated by commas or lines, or one number at
a time (the item, then the bot asks how many).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_PUNCTUATION = re.compile(r"[\s!.?؟،,:;'\"()\-]+")

COMMANDS: dict[str, frozenset[str]] = {
    "menu": frozenset({"menu", "תפריט", "התפריט", "قائمة", "القائمة", "منيو", "المنيو"}),
    "cart": frozenset({"cart", "basket", "סל", "הסל", "עגלה", "سلة", "السلة"}),
    "cancel": frozenset(
        {"cancel", "stop order", "ביטול", "בטל", "לבטל", "إلغاء", "الغاء", "الغاء الطلب",
         "إلغاء الطلب"}
    ),
    "help": frozenset({"help", "עזרה", "مساعدة", "مساعده"}),
    "human": frozenset(
        {"human", "agent", "person", "representative", "נציג", "נציגה", "נציג אנושי", "אדם",
         "موظف", "انسان", "إنسان", "خدمة العملاء"}
    ),
}  # fmt: skip
WORDS: dict[str, frozenset[str]] = {
    "done": frozenset(
        {"done", "finish", "finished", "checkout", "that's all", "thats all", "סיום", "סיימתי",
         "זהו", "זה הכל", "תם", "تم", "خلاص", "انتهيت", "هذا كل شيء"}
    ),
    "yes": frozenset(
        {"yes", "y", "ok", "okay", "confirm", "כן", "אישור", "מאשר", "מאשרת", "אשר", "نعم",
         "تأكيد", "اكيد", "أكيد", "موافق"}
    ),
    "no": frozenset({"no", "n", "לא", "لا", "change", "שינוי", "تغيير"}),
    "delivery": frozenset({"delivery", "deliver", "משלוח", "משלוח הביתה", "توصيل"}),
    "pickup": frozenset(
        {"pickup", "pick up", "takeaway", "take away", "collect", "איסוף", "איסוף עצמי",
         "استلام", "استلام من المطعم"}
    ),
}  # fmt: skip
_STARS = {"⭐", "★", "🌟", "✩", "☆"}
_SELECTION_X = re.compile(r"^(\d{1,3})\s*[x×*хX]\s*(\d{1,3})$")  # noqa: RUF001
_SELECTION_PAIR = re.compile(r"^(\d{1,3})\s+(\d{1,3})$")
_NUMBER = re.compile(r"^(\d{1,3})$")


def normalise(text: str) -> str:
    """Lower case, Arabic-Indic digits as ASCII, trimmed, inner spaces single."""
    text = unicodedata.normalize("NFKC", text or "").translate(_DIGITS)
    return " ".join(text.strip().lower().split())


def _bare(text: str) -> str:
    return _PUNCTUATION.sub(" ", text).strip()


def command_of(text: str) -> str | None:
    """ "menu", "cart", "cancel", "help" or "human" when the whole message is one."""
    bare = _bare(normalise(text))
    for name, words in COMMANDS.items():
        if bare in words:
            return name
    return None


def word_of(text: str, *names: str) -> str | None:
    """Which of the WORDS `names` (or a leading "1"/"2" for the first two) this is."""
    bare = _bare(normalise(text))
    for name in names:
        if bare in WORDS[name]:
            return name
    return None


def language_of(text: str) -> str | None:
    """ "he", "ar" or "en" from the letters written; None for digits and emoji only."""
    counts = {"he": 0, "ar": 0, "en": 0}
    for char in text or "":
        code = ord(char)
        if 0x0590 <= code <= 0x05FF:
            counts["he"] += 1
        elif 0x0600 <= code <= 0x06FF or 0x0750 <= code <= 0x077F:
            counts["ar"] += 1
    # A lone Latin letter is no language: "3 x 2" is a choice of items, not English.
    counts["en"] = sum(len(word) for word in re.findall(r"[a-zA-Z]{2,}", text or ""))
    best = max(counts, key=counts.get)
    return best if counts[best] else None


@dataclass(frozen=True)
class Selection:
    item: int  # 1-based number on the menu
    quantity: int | None  # None: the customer still has to say how many


def selections_of(text: str) -> list[Selection] | None:
    """The items chosen in a message, or None if it is not a choice of items."""
    parts = [normalise(p) for p in re.split(r"[,\n;،]+", text or "") if p.strip()]
    if not parts:
        return None
    found = []
    for part in parts:
        if match := _SELECTION_X.match(part) or _SELECTION_PAIR.match(part):
            found.append(Selection(int(match.group(1)), int(match.group(2))))
        elif (match := _NUMBER.match(part)) and len(parts) == 1:
            found.append(Selection(int(match.group(1)), None))
        else:
            return None
    return found


def number_of(text: str) -> int | None:
    """A message that is just a whole number."""
    match = _NUMBER.match(normalise(text))
    return int(match.group(1)) if match else None


def rating_of(text: str) -> tuple[int, str] | None:
    """A 1-5 rating and the rest as a comment: "5", Arabic-Indic five, "⭐⭐⭐⭐", "4 great food".
    None for anything else (0, 6, 10, two numbers, words only)."""
    cleaned = normalise(text).replace("\ufe0f", "")
    if not cleaned:
        return None
    stars = sum(1 for char in cleaned if char in _STARS)
    if stars and not cleaned.replace(" ", "").strip("".join(_STARS)):
        return (stars, "") if 1 <= stars <= 5 else None
    digits = re.findall(r"\d+", re.sub(r"/\s*5\b", "", cleaned))
    if len(digits) != 1 or digits[0] not in {"1", "2", "3", "4", "5"}:
        return None
    match = re.match(r"^\s*([1-5])\s*(?:/\s*5)?\s*(.*)$", cleaned, re.DOTALL)
    if not match:
        return None
    return int(match.group(1)), match.group(2).strip(" -,.:")[:500]
