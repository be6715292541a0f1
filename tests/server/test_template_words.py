"""The pages compare and send the domain's words through their one declaration
(server.web.TEMPLATE_WORDS): a misspelt member would be Jinja's silent undefined, never equal
to anything, so every one a template names must exist, and no status is compared with a bare
string that could drift from its vocabulary."""
from __future__ import annotations

import re
from pathlib import Path

from server.web import TEMPLATE_WORDS

TEMPLATES = sorted((Path(__file__).parents[2] / "server" / "templates").glob("*.html"))
MEMBER = re.compile(r"\b(" + "|".join(TEMPLATE_WORDS) + r")\.([A-Za-z_]+)\b")
# a domain attribute compared with a literal: `b.status == 'pending'`, `x.state in ('a', 'b')`
LITERAL = re.compile(r"\.(status|state|severity|source|result|played|type|kind)\s*"
                     r"(?:==|!=|\bin\b)\s*\(?\s*['\"]")


def test_every_word_a_template_names_is_a_member_of_its_vocabulary():
    named = 0
    for path in TEMPLATES:
        for vocabulary, member in MEMBER.findall(path.read_text()):
            assert member in TEMPLATE_WORDS[vocabulary].__members__, (path.name, vocabulary,
                                                                      member)
            named += 1
    assert named >= 20  # the pages do use them


def test_no_template_compares_a_status_with_a_bare_string():
    found = [(path.name, n, line.strip()) for path in TEMPLATES
             for n, line in enumerate(path.read_text().splitlines(), 1) if LITERAL.search(line)]
    assert found == []
