"""Reference programs written for these tests: the stdin/stdout files ship no solutions.

Keyed by the record's index in its file; each was checked by hand against the
problem statement, and the tests check each against the file's own cases.
"""

import ast

CODEFORCES_PY = {
    0: """
t = int(input())
for _ in range(t):
    x, y = map(int, input().split())
    print(min(x, y), max(x, y))
""",
    3: """
import sys
data = sys.stdin.read().split()
for s in data[1:]:
    changes = sum(a != b for a, b in zip(s, s[1:]))
    print(changes + 1 - ("01" in s))
""",
    5: """
from math import isqrt
def ceil_sqrt(v):
    return 0 if v <= 0 else isqrt(v - 1) + 1
for _ in range(int(input())):
    r = int(input())
    quarter = sum(isqrt((r + 1) ** 2 - 1 - x * x) - ceil_sqrt(r * r - x * x) + 1
                  for x in range(1, r + 1))
    print(4 * quarter)
""",
    21: """
for _ in range(int(input())):
    x, y = map(int, input().split())
    screens = (y + 1) // 2
    free = screens * 15 - 4 * y
    if x > free:
        screens += (x - free + 14) // 15
    print(screens)
""",
    37: """
for _ in range(int(input())):
    input()
    s = input().strip()
    print("YES" if s == "".join(sorted(s)) else "NO")
""",
    55: """
for _ in range(int(input())):
    x, y = map(int, input().split())
    d = x ^ y
    print(d & -d)
""",
}

CODE_CONTESTS_PY = {
    0: """
import sys
lines = sys.stdin.read().split()
n, m = int(lines[0]), int(lines[1])
books = lines[2:2 + n]
key = lambda i: tuple(ord(c) if j % 2 == 0 else -ord(c) for j, c in enumerate(books[i]))
print(" ".join(str(i + 1) for i in sorted(range(n), key=key)))
""",
    28: """
for _ in range(int(input())):
    a, b, c = map(int, input().split())
    print((a + 2 * b + 3 * c) % 2)
""",
}

CODEFORCES_CPP = {
    0: """
#include <bits/stdc++.h>
using namespace std;
int main() {
    int t; cin >> t;
    while (t--) { int x, y; cin >> x >> y; cout << min(x, y) << " " << max(x, y) << "\\n"; }
}
""",
    3: """
#include <bits/stdc++.h>
using namespace std;
int main() {
    int t; cin >> t;
    while (t--) {
        string s; cin >> s;
        int changes = 0; bool up = false;
        for (size_t i = 0; i + 1 < s.size(); i++) {
            changes += s[i] != s[i + 1];
            up = up || (s[i] == '0' && s[i + 1] == '1');
        }
        cout << changes + 1 - (up ? 1 : 0) << "\\n";
    }
}
""",
    21: """
#include <iostream>
int main() {
    int t; std::cin >> t;
    while (t--) {
        int x, y; std::cin >> x >> y;
        int screens = (y + 1) / 2, free_cells = screens * 15 - 4 * y;
        if (x > free_cells) screens += (x - free_cells + 14) / 15;
        std::cout << screens << "\\n";
    }
}
""",
    55: """
#include <bits/stdc++.h>
int main() {
    int t; scanf("%d", &t);
    while (t--) {
        long long x, y; scanf("%lld %lld", &x, &y);
        long long d = x ^ y; printf("%lld\\n", d & -d);
    }
}
""",
}

CODE_CONTESTS_CPP = {
    28: """
#include <bits/stdc++.h>
using namespace std;
int main() {
    int t; cin >> t;
    while (t--) { long long a, b, c; cin >> a >> b >> c; cout << (a + 2 * b + 3 * c) % 2 << "\\n"; }
}
""",
}

KODCODE_STYLE = [
    # (solution module, pytest module) in KodCode's shape: `from solution import ...` + test_*
    (
        """
def two_sum(nums, target):
    seen = {}
    for i, x in enumerate(nums):
        if target - x in seen:
            return [seen[target - x], i]
        seen[x] = i
    return []
""",
        """
from solution import two_sum

def test_two_sum_basic():
    assert two_sum([2, 7, 11, 15], 9) == [0, 1]

def test_two_sum_middle():
    assert two_sum([3, 2, 4], 6) == [1, 2]

def test_two_sum_none():
    assert two_sum([1, 2], 7) == []
""",
    ),
    (
        """
import math

def average(values):
    if not values:
        raise ValueError("empty")
    return math.fsum(values) / len(values)

def shout(word):
    print(word.upper())
""",
        """
import pytest
from solution import average, shout

@pytest.mark.parametrize("values,expected", [([1, 2], 1.5), ([0.1, 0.2], 0.15),
                                             pytest.param([3], 3.0, id="one")])
def test_average(values, expected):
    assert average(values) == pytest.approx(expected)

def test_average_empty():
    with pytest.raises(ValueError, match="empty"):
        average([])

@pytest.fixture
def word():
    yield "hello"

def test_shout(capsys, word):
    shout(word)
    assert capsys.readouterr().out == "HELLO\\n"

def test_tmp_path(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    assert (tmp_path / "a.txt").read_text() == "x"

class TestAverage:
    def test_negative(self):
        assert average([-1, -3]) == -2
""",
    ),
    (
        """
import os
import warnings

def greet():
    name = input("name? ")
    return f"hello {name} from {os.environ.get('PLACE', 'nowhere')}"

def old():
    warnings.warn("old() is deprecated", DeprecationWarning)
    return 1
""",
        """
import builtins
import pytest
import solution

def test_greet(monkeypatch):
    monkeypatch.setattr(builtins, "input", lambda prompt: "ada")
    monkeypatch.setenv("PLACE", "london")
    assert solution.greet() == "hello ada from london"

def test_greet_undone():
    assert "PLACE" not in __import__("os").environ

def test_old_warns():
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert solution.old() == 1
""",
    ),
]


# --- real problems as KodCode-style pytest modules ------------------------------------------
# KodCode stores test modules that call the solution's functions without importing them
# (its runner prepends `from solution import *`). These turn the real problems in
# ../shared/data/code into such modules: each assert becomes a `def test_N():`, and no
# module imports anything from `solution`.


def _test_function(n: int, statements: list[str]) -> str:
    body = "\n".join(statements)
    return f"def test_{n}():\n" + "".join(f"    {line}\n" for line in body.splitlines())


def kodcode_mbpp(record: dict) -> str:
    """MBPP's asserts (PRIME's new_mbpp), one test function each, its imports on top."""
    tests = [_test_function(n, [a]) for n, a in enumerate(record["test_list"])]
    return "\n".join([*record.get("test_imports", []), "", *tests])


def kodcode_humaneval(record: dict) -> str:
    """HumanEval's check(candidate), called on the entry point by name."""
    return f"{record['test']}\n\ndef test_check():\n    check({record['entry_point']})\n"


def kodcode_leetcode(script: str) -> str:
    """PRIME's `my_solution = Solution()` script: one test per assert, each with its own
    `Solution()` and the `test_input` assigned before it."""
    body = ast.parse(script).body
    head = [ast.unparse(s) for s in body[:1]]  # my_solution = Solution()
    tests, pending = [], []
    for stmt in body[1:]:
        pending.append(ast.unparse(stmt))
        if isinstance(stmt, ast.Assert):
            tests.append(_test_function(len(tests), head + pending))
            pending = []
    return "\n".join(tests)
