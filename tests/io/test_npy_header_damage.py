"""A dataset's ``.npy`` embeddings file with a damaged header is a DataError naming the file.

Before, numpy's header parser (``ast`` then ``tokenize``) let ``tokenize.TokenError`` escape for
headers such as an unclosed bracket, printed as a raw traceback.
"""

from __future__ import annotations

import pytest

from cascal.errors import DataError
from cascal.io.embeddings import open_npy


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, }",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': '''",
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': [}",
    ],
)
def test_damaged_header_is_a_data_error_naming_the_file(tmp_path, header):
    body = header.ljust(118) + b"\n"
    path = tmp_path / "embeddings.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body + bytes(64))
    with pytest.raises(DataError, match=rf"^{path}: not a readable .npy array"):
        open_npy(path)
