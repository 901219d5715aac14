"""MovieLens import: the three layouts, row order as event_id, and loud failures on bad input.

The fixtures under tests/fixtures/movielens are invented rows in the MovieLens layouts
(MovieLens itself must not be redistributed).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.core import schema
from pipelines.datasets.movielens import detect_format, import_movielens

# The fixture files carry a ``.txt`` suffix in the repository, so no committed file bears a
# MovieLens file name; the tests read proper-named copies.
FIXTURE_SOURCES = Path(__file__).resolve().parents[2] / "fixtures" / "movielens"
FIXTURES = Path(tempfile.mkdtemp(prefix="movielens-fixtures-"))
atexit.register(shutil.rmtree, FIXTURES, True)
for _source in FIXTURE_SOURCES.rglob("*.txt"):
    _target = FIXTURES / _source.relative_to(FIXTURE_SOURCES).with_suffix("")
    _target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_source, _target)
ML_100K = FIXTURES / "ml-100k-tiny"
ML_1M = FIXTURES / "ml-1m-tiny"
ML_LATEST = FIXTURES / "ml-latest-small-tiny"
NO_GROUPS = {"group_members": 0, "group_events": 0}  # MovieLens has no explicit groups: empty tables


def read_tables(url: str) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = {
            name: pd.read_sql(sa.select(table).order_by(*table.primary_key.columns), conn)
            for name, table in (("users", schema.users), ("items", schema.items), ("interactions", schema.interactions))
        }
    engine.dispose()
    return tables


def by_id(frame: pd.DataFrame, column: str) -> dict[str, dict]:
    return {row[column]: row for row in frame.to_dict("records")}


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/w.db"


def copy_fixture(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def replace_line(file: Path, number: int, text: str, encoding: str = "latin-1") -> None:
    lines = file.read_text(encoding=encoding).splitlines()
    lines[number - 1] = text
    file.write_text("\n".join(lines) + "\n", encoding=encoding)


# --- detect_format ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [(ML_100K, "100k"), (ML_1M, "1m"), (ML_LATEST, "latest-small")])
def test_detects_each_format(path, expected):
    assert detect_format(path) == expected


def test_detect_format_names_directory_and_expected_files(tmp_path):
    (tmp_path / "u.data").write_text("1\t1\t5\t0\n")  # a partial 100K set is no format
    with pytest.raises(ValueError) as error:
        detect_format(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    for name in ("u.item", "u.user", "ratings.dat", "movies.dat", "users.dat", "ratings.csv", "movies.csv"):
        assert name in message


def test_detect_format_rejects_a_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        detect_format(tmp_path / "nowhere")


# --- the three formats --------------------------------------------------------------------------


def test_imports_100k(url):
    counts = import_movielens(ML_100K, url)
    tables = read_tables(url)
    assert counts == {"users": 3, "items": 4, "interactions": 6, **NO_GROUPS}
    items = by_id(tables["items"], "item_id")
    assert items["2"]["title"] == "Café Solitaire (1996)"  # latin-1 decoded
    assert items["1"]["categories"] == "action|comedy"
    assert items["1"]["description"] == "Action, Comedy film released 1994"
    assert (items["3"]["title"], items["3"]["categories"], items["3"]["description"]) == ("unknown", "", "Film")
    assert by_id(tables["users"], "user_id")["1"]["attributes"] == "age 31, female, writer"
    events = tables["interactions"]
    assert list(zip(events["event_id"], events["user_id"], events["item_id"])) == [
        (1, "1", "3"), (2, "1", "1"), (3, "2", "2"), (4, "3", "4"), (5, "2", "1"), (6, "3", "2"),
    ]
    # Lines 1 and 2 share a timestamp: their file order, not the item id, decides event_id.
    assert events["ts"].iloc[0] == events["ts"].iloc[1] == datetime(1997, 12, 4, 15, 55, 49)
    assert list(events["rating"]) == [4.0, 5.0, 3.0, 1.0, 2.0, 5.0]
    assert set(events["event_type"]) == {"rating"}


def test_imports_1m(url):
    counts = import_movielens(ML_1M, url)
    tables = read_tables(url)
    assert counts == {"users": 2, "items": 3, "interactions": 5, **NO_GROUPS}
    items = by_id(tables["items"], "item_id")
    assert items["10"]["title"] == "Crème Brûlée Diaries (1999)"
    assert items["20"]["title"] == "Station Eleven: Before (2000)"  # a single ':' is not a separator
    assert items["30"]["categories"] == "sci-fi|thriller"
    assert items["30"]["description"] == "Sci-Fi, Thriller film released 1998"
    users = by_id(tables["users"], "user_id")
    assert users["7"]["attributes"] == "age 25-34, female, programmer"
    assert users["8"]["attributes"] == "age 56+, male, retired"
    events = tables["interactions"]
    assert list(zip(events["user_id"], events["item_id"]))[:2] == [("7", "30"), ("7", "10")]
    assert events["ts"].iloc[0] == events["ts"].iloc[1] == datetime(2000, 12, 31, 22, 12, 40)
    assert list(events["event_id"]) == [1, 2, 3, 4, 5]


def test_imports_latest_small(url):
    counts = import_movielens(ML_LATEST, url)
    tables = read_tables(url)
    assert counts == {"users": 3, "items": 3, "interactions": 5, **NO_GROUPS}
    items = by_id(tables["items"], "item_id")
    assert items["101"]["title"] == "Good, the Odd and the Tiny, The (1966)"
    assert items["102"]["title"] == "Pâtisserie Nights (2011)"
    assert (items["103"]["categories"], items["103"]["description"]) == ("", "Film")  # no genres, no year
    # No users file: users come from the ratings, without attributes.
    assert list(tables["users"]["user_id"]) == ["5", "6", "9"]
    assert set(tables["users"]["attributes"]) == {""}
    events = tables["interactions"]
    assert list(events["rating"]) == [3.5, 4.0, 0.5, 5.0, 2.5]
    assert list(events["item_id"])[:2] == ["103", "101"]
    assert events["ts"].iloc[0] == events["ts"].iloc[1] == datetime(2000, 7, 30, 18, 45, 3)


def test_import_replaces_rows_and_keeps_other_tables(url):
    import_movielens(ML_100K, url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.recommendations.insert(), [
            {"run_date": "2026-01-05", "user_id": "1", "rank": 1, "item_id": "1", "score": 0.5, "model_version": 1}
        ])
    counts = import_movielens(ML_1M, url)
    tables = read_tables(url)
    assert {**{name: len(frame) for name, frame in tables.items()}, **NO_GROUPS} == counts
    assert set(tables["users"]["user_id"]) == {"7", "8"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.recommendations)).scalar_one() == 1
    engine.dispose()


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "file", "line", "text", "message"),
    [
        (ML_100K, "u.data", 3, "2\t2\t3\t881250000\t7", r"u\.data: line 3: malformed"),  # a field too many
        (ML_100K, "u.data", 1, "1\t3\t4\t881250949\t9", r"u\.data: line 1: malformed"),  # ... on the first line
        (ML_100K, "u.data", 2, "1\t1\t5", r"u\.data: line 2: malformed line, fewer than 4 fields"),
        (ML_100K, "u.data", 4, "3\t4\tfive\t891717742", r"u\.data: line 4: rating 'five' is not a number"),
        (ML_100K, "u.data", 5, "2\t1\t9\t881260000", r"u\.data: line 5: rating outside"),
        (ML_100K, "u.data", 6, "3\t99\t5\t891700000", r"u\.data: line 6: item_id not in the movies file"),
        (ML_100K, "u.data", 6, "42\t2\t5\t891700000", r"u\.data: line 6: user_id not in the users file"),
        (ML_100K, "u.item", 2, "2|Café Solitaire (1996)|12-Mar-1996", r"u\.item: line 2: malformed"),
        (ML_100K, "u.user", 3, "1|19|F|student|T8H1N", r"u\.user: line 3: duplicate user_id"),
        (ML_1M, "ratings.dat", 2, "7::10::5", r"ratings\.dat: line 2: malformed"),
        (ML_1M, "ratings.dat", 3, "8::20::3::1.5e", r"ratings\.dat: line 3: timestamp '1\.5e' is not an integer"),
        (ML_1M, "movies.dat", 1, "10::Crème Brûlée Diaries (1999)::Comedy::Extra", r"movies\.dat: line 1: malformed"),
        (ML_LATEST, "ratings.csv", 3, "5,101,four,964982703", r"ratings\.csv: line 3: rating 'four' is not a number"),
        (ML_LATEST, "ratings.csv", 1, "user,movie,rating,timestamp", r"ratings\.csv: line 1: expected the header"),
        (ML_LATEST, "movies.csv", 2, '101,"Good, the Odd,Action', r"movies\.csv: line 2: malformed"),  # open quote
    ],
)
def test_malformed_input_names_file_and_line(tmp_path, url, fixture, file, line, text, message):
    directory = copy_fixture(fixture, tmp_path)
    encoding = "utf-8" if file.endswith(".csv") else "latin-1"
    replace_line(directory / file, line, text, encoding)
    with pytest.raises(ValueError, match=message):
        import_movielens(directory, url)


def test_invalid_utf8_names_the_line(tmp_path, url):
    directory = copy_fixture(ML_LATEST, tmp_path)
    movies = directory / "movies.csv"
    movies.write_bytes(movies.read_bytes().replace("Pâtisserie".encode(), "Pâtisserie".encode("latin-1")))
    with pytest.raises(ValueError, match=r"movies\.csv: line 3: not valid utf-8"):
        import_movielens(directory, url)


def test_missing_file_names_the_directory_and_file(tmp_path, url):
    directory = copy_fixture(ML_100K, tmp_path)
    (directory / "u.user").unlink()
    with pytest.raises(ValueError, match="u.user") as error:
        import_movielens(directory, url)
    assert str(directory) in str(error.value)


def test_failed_import_leaves_the_warehouse_as_it_was(tmp_path, url):
    import_movielens(ML_1M, url)
    before = read_tables(url)
    directory = copy_fixture(ML_100K, tmp_path)
    replace_line(directory / "u.data", 6, "3\t99\t5\t891700000")
    with pytest.raises(ValueError):
        import_movielens(directory, url)
    for name, frame in read_tables(url).items():
        pd.testing.assert_frame_equal(frame, before[name], obj=name)


@pytest.mark.postgres
def test_imports_into_postgresql(postgres_url):
    import_movielens(ML_1M, postgres_url)
    counts = import_movielens(ML_100K, postgres_url)  # replaces the 1M rows
    tables = read_tables(postgres_url)
    assert {**{name: len(frame) for name, frame in tables.items()}, **NO_GROUPS} == counts \
        == {"users": 3, "items": 4, "interactions": 6, **NO_GROUPS}
    assert by_id(tables["items"], "item_id")["2"]["title"] == "Café Solitaire (1996)"
    events = tables["interactions"]
    assert list(events["item_id"]) == ["3", "1", "2", "4", "1", "2"]
    assert events["ts"].iloc[0] == datetime(1997, 12, 4, 15, 55, 49)


# --- the real MovieLens 100K (skipped where ../shared/data/ml-100k is absent) -------------------


def test_real_movielens_100k(movielens_100k, url):
    counts = import_movielens(movielens_100k, url)
    assert counts == {"users": 943, "items": 1682, "interactions": 100_000, **NO_GROUPS}
    tables = read_tables(url)
    events = tables["interactions"]
    assert len(events) == 100_000 and list(events["event_id"]) == list(range(1, 100_001))
    assert events["rating"].between(1, 5).all()
    assert events["user_id"].isin(tables["users"]["user_id"]).all()
    assert events["item_id"].isin(tables["items"]["item_id"]).all()
    first_line = (movielens_100k / "u.data").read_text(encoding="latin-1").splitlines()[0].split("\t")
    first = events.iloc[0]
    assert [first["user_id"], first["item_id"], first["rating"]] == [first_line[0], first_line[1], float(first_line[2])]
    assert first["ts"] == datetime(1970, 1, 1) + timedelta(seconds=int(first_line[3]))
    assert tables["users"]["attributes"].str.fullmatch(r"age \d+, (male|female), .+").all()
    assert tables["items"]["categories"].str.len().gt(0).mean() > 0.99
