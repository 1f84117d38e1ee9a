"""CSV parsing for `customer import`: every bad row is named by its line number."""

from __future__ import annotations

from gateway.tickets.customers import parse_customer_csv


def test_good_rows_keep_exact_case() -> None:
    rows, problems = parse_customer_csv(
        "\ufeffusername,email,name,organisation,language\n"
        "mmuster,Max.Muster@ACME.example,Max Muster,acme,de\n"
        "MMuster,max@acme.example,,acme,en\n")
    assert problems == []
    assert [(line, c.username, c.email) for line, c in rows] == [
        (2, "mmuster", "Max.Muster@ACME.example"), (3, "MMuster", "max@acme.example")]


def test_bad_rows_are_listed_by_line() -> None:
    _, problems = parse_customer_csv(
        "username,email,language\n"
        "ok,ok@example.com,de\n"
        "bad,not-an-address,de\n"
        ",empty@example.com,de\n"
        "ok,again@example.com,en\n"
        "lang,lang@example.com,fr\n"
        "short\n")
    assert [p.split(":")[0] for p in problems] == [
        "line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "'not-an-address' is not a valid mail address" in problems[0]
    assert "is also on line 2" in problems[2]
    assert "expected 3 fields" in problems[4]


def test_header_problems() -> None:
    _, problems = parse_customer_csv("user,mail\nx,y@z.de\n")
    assert problems == ["line 1: missing column(s) username, email; unknown column(s) "
                        "user, mail (columns: username, email, name, organisation, language)"]
    _, problems = parse_customer_csv("username,email\n")
    assert problems == ["line 2: no customer rows after the header"]
