"""Imports a MovieLens download (100K, 1M or latest-small) into the canonical warehouse schema.

MovieLens cannot be redistributed, so users download it themselves and import it with this
module. Each format is read with pandas into all-string columns first, then checked line by
line, so that bad input fails with the file and line number instead of a half-imported
warehouse. ``interactions.event_id`` follows the ratings file's row order: MovieLens has many
ratings with the same timestamp, and that order is what breaks the ties downstream.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core import schema
from pipelines.datasets.synthetic import replace_canonical_tables, seconds_to_datetimes

EPOCH = datetime(1970, 1, 1)  # naive UTC, as the schema wants

# Files that identify each format, in the order detect_format tries them.
FORMAT_FILES: dict[str, tuple[str, ...]] = {
    "100k": ("u.data", "u.item", "u.user"),
    "1m": ("ratings.dat", "movies.dat", "users.dat"),
    "latest-small": ("ratings.csv", "movies.csv"),
}

# The 19 genre flags of u.item, in column order (as listed in ml-100k's u.genre).
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
# users.dat of ML-1M codes age groups and occupations (see its README).
AGE_GROUPS_1M = {
    "1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+",
}
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
GENDERS = {"M": "male", "F": "female"}
NO_GENRES = "(no genres listed)"  # latest-small's marker for a movie without genres
RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class _Source:
    """One format's frames, already checked, in canonical column names."""

    users: pd.DataFrame  # user_id, attributes
    items: pd.DataFrame  # item_id, title, categories, description
    ratings: pd.DataFrame  # user_id, item_id, rating, seconds, line


def detect_format(path: Path) -> str:
    """Returns "100k", "1m" or "latest-small" from the files present in ``path``.

    Raises:
        ValueError: ``path`` is not a directory holding one of the formats' file sets.
    """
    path = Path(path)
    if path.is_dir():
        for name, files in FORMAT_FILES.items():
            if all((path / f).is_file() for f in files):
                return name
    expected = "; ".join(f"{'+'.join(files)} ({name})" for name, files in FORMAT_FILES.items())
    reason = "is not a directory" if not path.is_dir() else "holds no MovieLens file set"
    raise ValueError(f"{path} {reason}: expected one of {expected}")


def import_movielens(path: Path, url: str) -> dict[str, int]:
    """Loads the MovieLens download at ``path`` into the warehouse at ``url``.

    Users, items and interactions are replaced in one transaction; nothing is written unless
    every file parsed and every rating refers to a known user and movie.

    Returns:
        Row counts per table.

    Raises:
        ValueError: an unknown layout, or a malformed line (the message names file and line).
    """
    path = Path(path)
    source = _READERS[detect_format(path)](path)
    ratings = source.ratings
    interactions = {
        "event_id": range(1, len(ratings) + 1),  # the file's row order, which breaks ts ties
        "user_id": ratings["user_id"],
        "item_id": ratings["item_id"],
        "event_type": ["rating"] * len(ratings),
        "rating": ratings["rating"],
        "ts": seconds_to_datetimes(EPOCH, ratings["seconds"].tolist()),
    }
    users = {**source.users.to_dict("list"), "created_at": [None] * len(source.users)}
    items = {**source.items.to_dict("list"), "created_at": [None] * len(source.items)}
    return replace_canonical_tables(url, users=users, items=items, interactions=interactions)


# --- reading and checking ---------------------------------------------------------------------


def _read_lines(
    file: Path, *, sep: str, names: list[str], encoding: str, header: bool = False, quoted: bool = False
) -> pd.DataFrame:
    """Reads a delimited file into string columns, plus ``line``: its 1-based line number.

    Blank lines are dropped (but counted). pandas raises on a line with too many fields, but
    pads one with too few with empty strings; since every format's last column is required,
    an empty last column is rejected here as a short line.
    """
    if not file.is_file():
        raise ValueError(f"{file}: file not found")
    text = _decode(file, encoding)
    if len(sep) > 1:
        # pandas' C parser takes only one-character separators; the python engine is ~10x slower.
        text = text.replace(sep, "\x1f")
        sep = "\x1f"
    try:
        with warnings.catch_warnings():
            # A first line with too many fields only warns ("loss of data"): make it an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text),
                sep=sep,
                header=None,
                names=names,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
                index_col=False,
                quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
                engine="c",
            )
    except pd.errors.ParserWarning as exc:
        raise ValueError(f"{file}: line 1: malformed line, expected {len(names)} fields") from exc
    except pd.errors.ParserError as exc:
        raise ValueError(f"{file}: {_parser_error_location(exc)}: malformed line ({str(exc).strip()})") from exc
    # Stray spaces around fields would make "7" and "7 " two different ids.
    for column in names:
        frame[column] = frame[column].str.strip()
    frame["line"] = np.arange(1, len(frame) + 1)
    if header:
        _check_header(file, frame, names)
        frame = frame.iloc[1:]
    blank = (frame[names] == "").all(axis=1)
    frame = frame[~blank].reset_index(drop=True)
    # Every format's last column is required, so an empty one means a short line.
    short = f"malformed line, fewer than {len(names)} fields or an empty {names[-1]}"
    _fail(file, frame, frame[names[-1]] == "", short)
    return frame


def _parser_error_location(exc: pd.errors.ParserError) -> str:
    """The line that pandas' C parser complained about ("line 7", or a 0-based "row 6")."""
    text = str(exc)
    if found := re.search(r"line (\d+)", text):
        return f"line {found.group(1)}"
    if found := re.search(r"row (\d+)", text):
        return f"line {int(found.group(1)) + 1}"
    return "unknown line"


def _decode(file: Path, encoding: str) -> str:
    data = file.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{file}: line {line}: not valid {encoding} ({exc.reason})") from exc


def _check_header(file: Path, frame: pd.DataFrame, names: list[str]) -> None:
    found = [] if frame.empty else frame.iloc[0][names].tolist()
    if found != names:
        raise ValueError(f"{file}: line 1: expected the header {','.join(names)}, found {','.join(found)!r}")


def _fail(file: Path, frame: pd.DataFrame, mask: pd.Series, problem: str) -> None:
    """Raises for the first row where ``mask`` is true, naming its line and values."""
    if mask.any():
        row = frame[mask.to_numpy()].iloc[0]
        raise ValueError(f"{file}: line {row['line']}: {problem}")


def _require(file: Path, frame: pd.DataFrame, columns: list[str]) -> None:
    """Every column in ``columns`` is non-empty on every line."""
    for column in columns:
        _fail(file, frame, frame[column] == "", f"malformed line, {column} is missing")


def _numbers(file: Path, frame: pd.DataFrame, column: str, *, integer: bool) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values)
    if integer:
        bad |= values.fillna(0) != np.floor(values.fillna(0))
    kind = "an integer" if integer else "a number"
    if bad.any():
        value = frame.loc[bad.to_numpy(), column].iloc[0]
        _fail(file, frame, bad, f"{column} {value!r} is not {kind}")
    return values.astype("int64") if integer else values.astype("float64")


def _unique_ids(file: Path, frame: pd.DataFrame, column: str) -> None:
    _fail(file, frame, frame[column].duplicated(), f"duplicate {column}")


def _ratings(file: Path, frame: pd.DataFrame, users: pd.Series | None, items: pd.Series) -> pd.DataFrame:
    """Checks a ratings frame (user_id, item_id, rating, timestamp) against users and items."""
    _require(file, frame, RATING_COLUMNS)
    if frame.empty:
        raise ValueError(f"{file}: no ratings")
    rating = _numbers(file, frame, "rating", integer=False)
    low, high = schema.RATING_RANGE
    _fail(file, frame, (rating < low) | (rating > high), f"rating outside [{low}, {high}]")
    seconds = _numbers(file, frame, "timestamp", integer=True)
    _fail(file, frame, seconds < 0, "negative timestamp")
    if users is not None:
        _fail(file, frame, ~frame["user_id"].isin(users), "user_id not in the users file")
    _fail(file, frame, ~frame["item_id"].isin(items), "item_id not in the movies file")
    return pd.DataFrame(
        {
            "user_id": frame["user_id"],
            "item_id": frame["item_id"],
            "rating": rating,
            "seconds": seconds,
            "line": frame["line"],
        }
    )


def _description(genres: list[str], year: str) -> str:
    """E.g. "Action, Comedy film released 1995"; shorter when genres or year are unknown."""
    text = f"{', '.join(genres)} film" if genres else "Film"
    return f"{text} released {year}" if year else text


def _year_from_title(title: str) -> str:
    found = YEAR_IN_TITLE.search(title)
    return found.group(1) if found else ""


def _items(ids: pd.Series, titles: pd.Series, genres: list[list[str]], years: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ids.tolist(),
            "title": titles.tolist(),
            "categories": ["|".join(g.lower() for g in gs) for gs in genres],
            "description": [_description(gs, year) for gs, year in zip(genres, years)],
        }
    )


# --- the three formats ------------------------------------------------------------------------


def _read_100k(path: Path) -> _Source:
    flags = [f"genre_{k}" for k in range(len(GENRES_100K))]
    movies = _read_lines(
        path / "u.item", sep="|", encoding="latin-1",
        names=["item_id", "title", "release_date", "video_release_date", "url", *flags],
    )
    _require(path / "u.item", movies, ["item_id", "title", *flags])
    _fail(path / "u.item", movies, ~movies[flags].isin(["0", "1"]).all(axis=1), "genre flags must be 0 or 1")
    _unique_ids(path / "u.item", movies, "item_id")
    genres = [
        [g for g, flag in zip(GENRES_100K, row) if flag == "1" and g != "unknown"] for row in movies[flags].to_numpy()
    ]
    # The release date looks like "01-Jan-1995"; a few are empty, so fall back to the title.
    years = [
        date[-4:] if re.fullmatch(r".*\d{4}", date) else _year_from_title(title)
        for date, title in zip(movies["release_date"], movies["title"])
    ]
    users = _read_lines(
        path / "u.user", sep="|", encoding="latin-1", names=["user_id", "age", "gender", "occupation", "zip"]
    )
    _require(path / "u.user", users, ["user_id", "age", "gender", "occupation"])
    ages = _numbers(path / "u.user", users, "age", integer=True)
    _unique_ids(path / "u.user", users, "user_id")
    attributes = [
        f"age {age}, {GENDERS.get(gender, gender)}, {occupation}"
        for age, gender, occupation in zip(ages, users["gender"], users["occupation"])
    ]
    ratings = _read_lines(path / "u.data", sep="\t", encoding="latin-1", names=RATING_COLUMNS)
    return _Source(
        users=pd.DataFrame({"user_id": users["user_id"].tolist(), "attributes": attributes}),
        items=_items(movies["item_id"], movies["title"], genres, years),
        ratings=_ratings(path / "u.data", ratings, users["user_id"], movies["item_id"]),
    )


def _read_1m(path: Path) -> _Source:
    movies = _read_lines(path / "movies.dat", sep="::", encoding="latin-1", names=["item_id", "title", "genres"])
    _require(path / "movies.dat", movies, ["item_id", "title"])
    _unique_ids(path / "movies.dat", movies, "item_id")
    genres = [[g for g in value.split("|") if g] for value in movies["genres"]]
    users = _read_lines(
        path / "users.dat", sep="::", encoding="latin-1", names=["user_id", "gender", "age", "occupation", "zip"]
    )
    _require(path / "users.dat", users, ["user_id", "gender", "age", "occupation"])
    _unique_ids(path / "users.dat", users, "user_id")
    occupation_codes = _numbers(path / "users.dat", users, "occupation", integer=True)
    attributes = [
        f"age {AGE_GROUPS_1M.get(age, age)}, {GENDERS.get(gender, gender)}, {_occupation_1m(code)}"
        for age, gender, code in zip(users["age"], users["gender"], occupation_codes)
    ]
    ratings = _read_lines(path / "ratings.dat", sep="::", encoding="latin-1", names=RATING_COLUMNS)
    return _Source(
        users=pd.DataFrame({"user_id": users["user_id"].tolist(), "attributes": attributes}),
        items=_items(movies["item_id"], movies["title"], genres, [_year_from_title(t) for t in movies["title"]]),
        ratings=_ratings(path / "ratings.dat", ratings, users["user_id"], movies["item_id"]),
    )


def _occupation_1m(code: int) -> str:
    return OCCUPATIONS_1M[code] if 0 <= code < len(OCCUPATIONS_1M) else f"occupation {code}"


def _read_latest_small(path: Path) -> _Source:
    movies = _read_lines(
        path / "movies.csv", sep=",", encoding="utf-8-sig", names=["movieId", "title", "genres"],
        header=True, quoted=True,
    )
    _require(path / "movies.csv", movies, ["movieId", "title"])
    _unique_ids(path / "movies.csv", movies, "movieId")
    genres = [[g for g in value.split("|") if g and value != NO_GENRES] for value in movies["genres"]]
    ratings = _read_lines(
        path / "ratings.csv", sep=",", encoding="utf-8-sig", names=["userId", "movieId", "rating", "timestamp"],
        header=True, quoted=True,
    )
    ratings = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    checked = _ratings(path / "ratings.csv", ratings, None, movies["movieId"])
    # latest-small has no users file: its users are the raters, in order of first appearance.
    user_ids = pd.unique(checked["user_id"]).tolist()
    return _Source(
        users=pd.DataFrame({"user_id": user_ids, "attributes": [""] * len(user_ids)}),
        items=_items(movies["movieId"], movies["title"], genres, [_year_from_title(t) for t in movies["title"]]),
        ratings=checked,
    )


_READERS: dict[str, Callable[[Path], _Source]] = {
    "100k": _read_100k,
    "1m": _read_1m,
    "latest-small": _read_latest_small,
}
