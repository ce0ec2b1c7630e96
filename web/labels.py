"""Arabic names of feeds.yaml's country codes and tag slugs, for pages, widgets and the
titles of our feeds alike (a reader should see "بريطانيا", not "GB")."""
from __future__ import annotations

COUNTRIES = {
    "AE": "الإمارات", "BH": "البحرين", "DZ": "الجزائر", "EG": "مصر", "GB": "بريطانيا",
    "FR": "فرنسا", "DE": "ألمانيا", "IQ": "العراق", "IR": "إيران", "IL": "إسرائيل",
    "JO": "الأردن", "KW": "الكويت", "LB": "لبنان", "LY": "ليبيا", "MA": "المغرب",
    "OM": "عُمان", "PS": "فلسطين", "QA": "قطر", "RU": "روسيا", "SA": "السعودية",
    "SD": "السودان", "SY": "سوريا", "TN": "تونس", "TR": "تركيا", "US": "الولايات المتحدة",
    "YE": "اليمن", "MR": "موريتانيا", "SO": "الصومال", "DJ": "جيبوتي", "KM": "جزر القمر",
    "CN": "الصين", "ES": "إسبانيا", "NL": "هولندا",
}

# feeds.yaml tags are ASCII slugs; readers see them in Arabic. Unknown tags show as written.
TAG_LABELS = {
    "pan-arab": "عربية عامة", "international": "دولية", "broadcaster": "قنوات",
    "newspaper": "صحف", "agency": "وكالات", "gulf": "الخليج", "levant": "بلاد الشام",
    "maghreb": "المغرب العربي", "egypt": "مصر", "syria": "سوريا", "iraq": "العراق",
    "lebanon": "لبنان", "palestine": "فلسطين", "yemen": "اليمن", "sudan": "السودان",
    "libya": "ليبيا", "jordan": "الأردن", "saudi": "السعودية", "economy": "اقتصاد",
    "sport": "رياضة", "technology": "تقنية", "culture": "ثقافة",
}


def tag_label(tag: str) -> str:
    return TAG_LABELS.get(tag, tag)
