"""Plausible, obviously synthetic names for the demo data set.

Small word lists combined by a seeded ``random.Random``: enough variety that
a list of customers reads like a real book of business (Chinese and
international companies and people), with no real person or company behind
any of them. E-mail addresses use the reserved ``.example`` domain.
"""

from __future__ import annotations

import random
import unicodedata

CN_CITIES = (
    ("Shanghai", "上海"),
    ("Shenzhen", "深圳"),
    ("Hangzhou", "杭州"),
    ("Suzhou", "苏州"),
    ("Guangzhou", "广州"),
    ("Chengdu", "成都"),
    ("Wuhan", "武汉"),
    ("Ningbo", "宁波"),
    ("Xiamen", "厦门"),
    ("Tianjin", "天津"),
    ("Nanjing", "南京"),
    ("Qingdao", "青岛"),
)
CN_BRANDS = (
    ("Hengtai", "恒泰"),
    ("Huaxin", "华信"),
    ("Jinlong", "金龙"),
    ("Ruifeng", "瑞丰"),
    ("Tianyu", "天宇"),
    ("Zhongke", "中科"),
    ("Mingda", "明达"),
    ("Xinghe", "星河"),
    ("Boyuan", "博远"),
    ("Kaiyue", "凯越"),
    ("Lianchuang", "联创"),
    ("Yongsheng", "永盛"),
    ("Haina", "海纳"),
    ("Jiahe", "嘉禾"),
    ("Dingxin", "鼎新"),
    ("Anda", "安达"),
)
INTL_STEMS = (
    "Nordvik",
    "Brightwater",
    "Keller",
    "Silverline",
    "Aurora",
    "Bluepeak",
    "Harbourview",
    "Lindqvist",
    "Meridian",
    "Oakridge",
    "Pacifica",
    "Rivergate",
    "Sterling",
    "Tessaro",
    "Vantage",
    "Westbrook",
)
INTL_SUFFIXES = ("Ltd", "GmbH", "AG", "B.V.", "Pte. Ltd.", "Inc.", "S.A.", "Oy")

INDUSTRY_WORDS: dict[str, tuple[str, str]] = {
    "MANUFACTURING": ("Precision Manufacturing", "精密制造"),
    "RETAIL": ("Retail", "商贸"),
    "HEALTHCARE": ("Medical", "医疗"),
    "FINANCIAL_SERVICES": ("Financial Services", "金融服务"),
    "LOGISTICS": ("Logistics", "物流"),
    "EDUCATION": ("Education", "教育科技"),
    "ENERGY": ("New Energy", "新能源"),
    "TECHNOLOGY": ("Technology", "科技"),
    "AUTOMOTIVE": ("Auto Parts", "汽车零部件"),
    "FOOD_AND_BEVERAGE": ("Foods", "食品"),
}

CN_SURNAMES = (
    ("Wang", "王"),
    ("Li", "李"),
    ("Zhang", "张"),
    ("Liu", "刘"),
    ("Chen", "陈"),
    ("Yang", "杨"),
    ("Zhao", "赵"),
    ("Huang", "黄"),
    ("Zhou", "周"),
    ("Wu", "吴"),
    ("Xu", "徐"),
    ("Sun", "孙"),
    ("Ma", "马"),
    ("Zhu", "朱"),
    ("Hu", "胡"),
    ("Guo", "郭"),
)
CN_GIVEN = (
    ("Wei", "伟"),
    ("Fang", "芳"),
    ("Na", "娜"),
    ("Min", "敏"),
    ("Jing", "静"),
    ("Lei", "磊"),
    ("Yang", "洋"),
    ("Yan", "艳"),
    ("Jie", "杰"),
    ("Tao", "涛"),
    ("Ming", "明"),
    ("Xiaoling", "晓玲"),
    ("Haoran", "浩然"),
    ("Zihan", "子涵"),
    ("Yuxuan", "宇轩"),
    ("Jianguo", "建国"),
)
INTL_GIVEN = (
    "Anna",
    "James",
    "Sofia",
    "Lukas",
    "Emma",
    "Oliver",
    "Mia",
    "Noah",
    "Elena",
    "Mateo",
    "Hannah",
    "Ravi",
    "Priya",
    "Kenji",
    "Chloé",
    "Lars",
)
INTL_SURNAMES = (
    "Müller",
    "Smith",
    "Rossi",
    "Janssen",
    "Nakamura",
    "Andersson",
    "García",
    "Novak",
    "Dubois",
    "Kowalski",
    "O'Brien",
    "Sharma",
    "Tanaka",
    "Schneider",
    "Costa",
    "Berg",
)

INTERNATIONAL_REGIONS = frozenset({"APAC", "EMEA", "AMERICAS"})


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits only (for e-mail addresses and domains)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


class NameMaker:
    """Company and person names, e-mails and phone numbers from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def company(self, industry: str, region: str) -> tuple[str, str]:
        """(display name, ASCII domain stem) of a company in this industry and region."""
        word_en, word_cn = INDUSTRY_WORDS[industry]
        if region in INTERNATIONAL_REGIONS:
            stem = self.rng.choice(INTL_STEMS)
            suffix = self.rng.choice(INTL_SUFFIXES)
            return f"{stem} {word_en} {suffix}", ascii_slug(stem + word_en.split()[0])
        city_en, city_cn = self.rng.choice(CN_CITIES)
        brand_en, brand_cn = self.rng.choice(CN_BRANDS)
        if self.rng.random() < 0.4:
            return f"{city_cn}{brand_cn}{word_cn}有限公司", ascii_slug(brand_en + city_en)
        return f"{city_en} {brand_en} {word_en} Co., Ltd.", ascii_slug(brand_en + city_en)

    def partner(self, kind_word: str) -> str:
        if self.rng.random() < 0.5:
            brand_en, _ = self.rng.choice(CN_BRANDS)
            city_en, _ = self.rng.choice(CN_CITIES)
            return f"{city_en} {brand_en} {kind_word}"
        return f"{self.rng.choice(INTL_STEMS)} {kind_word}"

    def person(self, region: str) -> tuple[str, str]:
        """(full name, ASCII e-mail local part)."""
        if region in INTERNATIONAL_REGIONS:
            given, family = self.rng.choice(INTL_GIVEN), self.rng.choice(INTL_SURNAMES)
            return f"{given} {family}", f"{ascii_slug(given)}.{ascii_slug(family)}"
        (family_en, family_cn), (given_en, given_cn) = (
            self.rng.choice(CN_SURNAMES),
            self.rng.choice(CN_GIVEN),
        )
        name = f"{family_cn}{given_cn}" if self.rng.random() < 0.3 else f"{family_en} {given_en}"
        return name, f"{ascii_slug(given_en)}.{ascii_slug(family_en)}"

    def phone(self, region: str) -> str:
        digits = "".join(str(self.rng.randrange(10)) for _ in range(8))
        if region in INTERNATIONAL_REGIONS:
            return f"+{self.rng.choice((44, 49, 31, 65, 81, 1))} {digits[:4]} {digits[4:]}"
        return (
            f"+86 1{self.rng.choice((3, 5, 8))}{self.rng.randrange(10)} {digits[:4]} {digits[4:]}"
        )
