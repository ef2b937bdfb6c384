"""Vocabularies shared by the aggregates (DESIGN §3).

String enums, so the values stored in events are the readable names and a
rename in code can never silently change what history means.
"""

from __future__ import annotations

from enum import StrEnum


class CustomerKind(StrEnum):
    ORGANISATION = "ORGANISATION"
    PERSON = "PERSON"


class PotentialValue(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


class Tier(StrEnum):
    STRATEGIC = "STRATEGIC"
    KEY = "KEY"
    STANDARD = "STANDARD"


class ContactLayer(StrEnum):
    OPERATIONAL = "OPERATIONAL"
    MANAGEMENT = "MANAGEMENT"
    DECISION = "DECISION"


class ContactFunction(StrEnum):
    USER = "USER"
    TECHNICAL = "TECHNICAL"
    FINANCE = "FINANCE"
    PROCUREMENT = "PROCUREMENT"
    OTHER = "OTHER"


class InteractionKind(StrEnum):
    CALL = "CALL"
    EMAIL = "EMAIL"
    MEETING = "MEETING"
    VISIT = "VISIT"
    CHAT = "CHAT"
    SOCIAL = "SOCIAL"
    EVENT = "EVENT"
    SUPPORT = "SUPPORT"
    PURCHASE = "PURCHASE"
    REFUND = "REFUND"
    COMPLAINT = "COMPLAINT"
    SURVEY = "SURVEY"
    CARE = "CARE"


MONETARY_KINDS = frozenset({InteractionKind.PURCHASE, InteractionKind.REFUND})


class Direction(StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class PartnerKind(StrEnum):
    JOINT_VENTURE = "JOINT_VENTURE"
    RESELLER = "RESELLER"
    DISTRIBUTOR = "DISTRIBUTOR"
    REFERRAL = "REFERRAL"
    TECHNOLOGY = "TECHNOLOGY"
    SERVICE = "SERVICE"


class PartnerStatus(StrEnum):
    REGISTERED = "REGISTERED"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    TERMINATED = "TERMINATED"


class LinkRole(StrEnum):
    REFERRAL = "REFERRAL"
    RESALE = "RESALE"
    CO_SELL = "CO_SELL"
    JOINT_VENTURE = "JOINT_VENTURE"
    SERVICE = "SERVICE"


class Purpose(StrEnum):
    MARKETING = "MARKETING"
    JOINT_SERVICE = "JOINT_SERVICE"
    SALES_COOPERATION = "SALES_COOPERATION"
    ANALYTICS = "ANALYTICS"
    SUPPORT = "SUPPORT"


class DataCategory(StrEnum):
    IDENTITY = "IDENTITY"
    CONTACT = "CONTACT"
    PROFILE = "PROFILE"
    PURCHASE_HISTORY = "PURCHASE_HISTORY"
    INTERACTION_HISTORY = "INTERACTION_HISTORY"
    SATISFACTION = "SATISFACTION"


class CompanySize(StrEnum):
    MICRO = "MICRO"
    SMALL = "SMALL"
    MEDIUM = "MEDIUM"
    LARGE = "LARGE"
    ENTERPRISE = "ENTERPRISE"


class Channel(StrEnum):
    PHONE = "PHONE"
    EMAIL = "EMAIL"
    WEB = "WEB"
    MOBILE_APP = "MOBILE_APP"
    IN_PERSON = "IN_PERSON"
    SOCIAL_MEDIA = "SOCIAL_MEDIA"
    MESSAGING = "MESSAGING"
    PARTNER = "PARTNER"
    OTHER = "OTHER"


class AgreementKind(StrEnum):
    COOPERATION = "COOPERATION"
    JOINT_VENTURE = "JOINT_VENTURE"
    RESALE = "RESALE"
    DISTRIBUTION = "DISTRIBUTION"
    REFERRAL = "REFERRAL"
    TECHNOLOGY = "TECHNOLOGY"
    SERVICE = "SERVICE"
    DATA_SHARING = "DATA_SHARING"
