"""Each PIL mode decoded by its meaning: expected pixels computed by hand from the formulas in vae/data/images.py."""

import numpy as np
import pytest
from PIL import Image

from vae.data.images import center_crop_resize, parse_background, read_image


def rgba(pixels):
    """2x2 RGBA image from four (r, g, b, a) tuples, row-major."""
    return Image.fromarray(np.array(pixels, np.uint8).reshape(2, 2, 4), "RGBA")


def test_rgba_is_composited_onto_white_by_default():
    image = rgba([(200, 100, 0, 128), (10, 20, 30, 0), (10, 20, 30, 255), (0, 0, 0, 64)])
    got = center_crop_resize(image, 2, 3)
    # (c * a + 255 * (255 - a)) / 255: 200 -> (25600 + 32385) / 255 = 227.4; 100 -> 177.2; 0 -> 127.0
    assert got[0, 0].tolist() == [227, 177, 127]
    assert got[0, 1].tolist() == [255, 255, 255]  # fully transparent: the colour underneath vanishes
    assert got[1, 0].tolist() == [10, 20, 30]  # opaque: unchanged
    assert got[1, 1].tolist() == [191, 191, 191]  # 255 * 191 / 255


def test_rgba_over_another_background_and_in_grayscale():
    image = rgba([(200, 100, 0, 128)] * 4)
    assert center_crop_resize(image, 2, 3, parse_background("black"))[0, 0].tolist() == [100, 50, 0]  # 25600 / 255
    # grayscale: composite first (227, 177, 127), then luma (299 * 227 + 587 * 177 + 114 * 127) / 1000 = 186.3
    assert center_crop_resize(image, 2, 1)[0, 0, 0] == 186


def test_la_is_composited_with_the_background_luma():
    image = Image.fromarray(np.array([[[100, 64]] * 2] * 2, np.uint8), "LA")
    assert center_crop_resize(image, 2, 1)[0, 0, 0] == 216  # (6400 + 255 * 191) / 255 = 216.1
    # background (16, 32, 48): luma (299 * 16 + 587 * 32 + 114 * 48) / 1000 = 29.0; (6400 + 29 * 191) / 255 = 46.8
    assert center_crop_resize(image, 2, 1, (16, 32, 48))[0, 0, 0] == 47
    assert center_crop_resize(image, 2, 3)[0, 0].tolist() == [216] * 3


def test_palette_with_and_without_a_transparent_index(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    plain = center_crop_resize(image, 2, 3)
    assert plain[0, 0].tolist() == [255, 0, 0] and plain[0, 1].tolist() == [0, 0, 255]
    assert center_crop_resize(image, 2, 1)[0, 0, 0] == 76  # luma of pure red: 299 * 255 / 1000 = 76.2
    image.save(tmp_path / "p.png", transparency=1)  # index 1 transparent (a tRNS chunk)
    got = read_image(tmp_path / "p.png", 2, 3, parse_background("#102030"))
    assert got[0, 0].tolist() == [255, 0, 0] and got[0, 1].tolist() == [16, 32, 48] == got[1, 0].tolist()


def test_colour_key_transparency_of_l_images():
    image = Image.new("L", (2, 2), 5)
    image.info["transparency"] = 5
    assert center_crop_resize(image, 2, 1)[0, 0, 0] == 255


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    values = np.array([[0, 1000], [65535, 32768]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode == "I;16"
    got = read_image(tmp_path / "g16.png", 2, 1)[..., 0]
    assert got.tolist() == [[0, 4], [255, 128]]  # round(v / 257): 1000 -> 3.9, 32768 -> 127.5
    assert read_image(tmp_path / "g16.png", 2, 3)[1, 1].tolist() == [128, 128, 128]


def test_32_bit_integer_mode_is_read_as_16_bit_range():
    image = Image.fromarray(np.array([[-5, 70000], [65535, 514]], np.int32))
    assert image.mode == "I"
    assert center_crop_resize(image, 2, 1)[..., 0].tolist() == [[0, 255], [255, 2]]  # clipped, then v / 257


def test_cmyk_and_bilevel():
    cmyk = Image.new("CMYK", (2, 2), (51, 0, 102, 51))
    # R = 255 (1 - C)(1 - K) = 255 * 0.8 * 0.8 = 163.2; G = 255 * 0.8 = 204; B = 255 * 0.6 * 0.8 = 122.4
    assert center_crop_resize(cmyk, 2, 3)[0, 0].tolist() == [163, 204, 122]
    bits = Image.fromarray(np.array([[True, False], [False, True]]))
    assert bits.mode == "1"
    assert center_crop_resize(bits, 2, 1)[..., 0].tolist() == [[255, 0], [0, 255]]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.array([[[10] * 3, [20] * 3], [[30] * 3, [40] * 3]], np.uint8)  # a b / c d
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation 6: shown rotated 90 degrees clockwise
    image.save(tmp_path / "rotated.png", exif=exif)
    got = read_image(tmp_path / "rotated.png", 2, 1)[..., 0]
    assert got.tolist() == [[30, 10], [40, 20]]  # c a / d b


def test_rgb_gray_round_trip_and_array_input():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 255
    assert center_crop_resize(rgb, 2, 1)[0, 0, 0] == 150  # 587 * 255 / 1000 = 149.7
    gray = np.full((2, 2, 1), 7, np.uint8)
    assert center_crop_resize(gray, 2, 3)[0, 0].tolist() == [7, 7, 7]
    four = np.zeros((2, 2, 4), np.uint8)  # an RGBA array with alpha 0: all background
    assert center_crop_resize(four, 2, 3)[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("spec", ["nocolour", "1,2", "0,0,300", "a,b,c"])
def test_bad_background_says_how_to_write_one(spec):
    with pytest.raises(ValueError, match=r"is not a colour: use a name .*#RRGGBB or R,G,B"):
        parse_background(spec)


def test_background_forms():
    assert parse_background("white") == (255, 255, 255)
    assert parse_background("#102030") == (16, 32, 48)
    assert parse_background("1,2,3") == (1, 2, 3)
