"""The report's formulas: cases typeset as cases, symbols by their mathematical names,
valid XML (independent expectation: the structure of the MathML tree itself)."""

from __future__ import annotations

import xml.dom.minidom

import featfate_sym as ff
from featfate_sym.report import mathml


def test_piecewise_is_typeset_as_cases_with_lambda():
    text = mathml(ff.get("lt.transferability").expr)
    assert "piecewise" not in text
    dom = xml.dom.minidom.parseString(text)
    rows = dom.getElementsByTagName("mtr")
    assert len(rows) == len(ff.get("lt.transferability").expr.args)  # one row per case
    assert "&#955;" in text and "lam" not in text  # lam prints as lambda (an XML character reference)
    last = mathml(ff.get("ft.transferability").expr)
    assert "otherwise" in last and "piecewise" not in last
