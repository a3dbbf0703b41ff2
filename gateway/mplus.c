/*
 * mplus.c - MplusKASSA SOAP client.
 *
 * A call goes: canonical JSON -> SOAP envelope (libxml2 tree, the schema's
 * element order) -> POST with ident/secret in the query -> SOAP answer ->
 * canonical JSON -> classification (SOAP Fault, in-band result, HTTP status)
 * -> one callback.
 *
 * The schema lives in the tables below, one compact line per complex type,
 * written from mplusqapi.xsd (the WSDL's schema, API v67.1.3) for the types
 * the supported operations reach. Which xsd:long fields hold cents and which
 * hold a quantity with a decimal-places sibling is not in the XSD; it is
 * taken from the official PHP client (MplusKASSA/mplusqapi-php,
 * src/MplusKASSA/MplusQapi/SoapParser.php), whose generator knows it.
 */
#include "mplus.h"
#include "log.h"
#include "metrics.h"
#include "sig.h"
#include "util.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NS_MPLUS "urn:mplusqapi"
#define NS_SOAP  "http://schemas.xmlsoap.org/soap/envelope/"
#define NS_XSI   "http://www.w3.org/2001/XMLSchema-instance"

#define MAX_DEPTH  64 /* nesting of the schema's recursive types (contacts, sub-articles) */
#define MAX_PLACES 18 /* more decimal places than an int64 has digits is nonsense */
/* A quantity without its decimal-places sibling: the official client reads
 * it with two places, so does this one. */
#define DEFAULT_PLACES 2
/* Big syncs are slow (the official client allows 600 s); a page should not
 * take two minutes, and a hung call must end to be retried. */
#define CALL_TIMEOUT_MS    (120 * 1000)
#define CONNECT_TIMEOUT_MS (10 * 1000)

/* ---- the schema ------------------------------------------------------------------
 *
 * {"Type", "field field ..."}: the elements of Type's sequence in schema order,
 * each "name:kind" plus "?" (minOccurs 0), "*" (minOccurs 0, maxOccurs
 * unbounded) or nothing (required, once). Kinds:
 *   s  text (xsd:string, enumerations, base64Binary, xsd:date, xsd:dateTime)
 *   i  xsd:int, xsd:short          l  xsd:long, xsd:unsignedInt
 *   b  xsd:boolean                 d  xsd:decimal (kept as exact text)
 *   $  xsd:long cents              D  SoapMplusDate     T  SoapMplusDateTime
 *   q=P  xsd:long quantity whose decimal places are in field P of the same type
 *   p  xsd:int decimal places of a quantity (folded into it in JSON)
 *   @Type  a complex type; one that holds a single repeated element is a list
 *          wrapper (an array in JSON)
 */
struct type_desc {
    const char *name;
    const char *fields;
};

static const struct type_desc type_descs[] = {
    {"Address", "addressId:s? name:s? contact:s? address:s? zipcode:s? city:s? country:s? label:s? "
                "companyName:s? supplierInformation:s?"},
    {"AllergenList", "allergen:@NutritionalCharacteristic*"},
    {"Answer", "questionId:i? questionText:s? answerText:s?"},
    {"AnswerList", "answer:@Answer*"},
    {"ApiIdentList", "apiIdent:s*"},
    {"Article",
     "articleNumber:l? extArticleId:s? pluNumber:s? syncMarker:l? changeTimestamp:T? "
     "createTimestamp:T? active:b? description:s? colour:s? colourSequenceNumber:i? size:s? "
     "sizeSequenceNumber:i? invoiceText:s? receiptText:s? displayText:s? barcode:s? "
     "barcodeDate:D? contentUnit:s? contentQuantity:q=contentQuantityDecimalPlaces? "
     "contentQuantityDecimalPlaces:p? brandName:s? extraText:s? turnoverGroup:i? vatCode:i? "
     "vatPercentage:i? vatCodeAlternative:i? vatPercentageAlternative:i? "
     "averagePurchasePrice:$? purchasePrice:$? priceIncl:$? priceExcl:$? siUnit:s? unit:s? "
     "orderQuantityValue:q=orderQuantityDecimalPlaces? orderQuantityDecimalPlaces:p? "
     "supplierRelationNumber:l? supplierRelationName:s? supplierArticleNumber:s? webshop:b? "
     "categoryId:i? categoryIds:@CategoryIdSet? stockArticle:b? articleDiscountGroupNumber:i? "
     "articleDiscountGroupName:s? course:@Course? specialPrice:s? "
     "showPreparationMethodsDirectly:b? showPreparationMethodsPerGroup:b? "
     "exchangeRateBuyPrice:q=exchangeRateBuyPriceDecimalPlaces? "
     "exchangeRateBuyPriceDecimalPlaces:p? "
     "exchangeRateSellPrice:q=exchangeRateSellPriceDecimalPlaces? "
     "exchangeRateSellPriceDecimalPlaces:p? exchangeRateMultiplier:i? imageList:@ImageList? "
     "customFieldList:@CustomFieldList? salesPriceList:@SalesPriceList? "
     "priceGroupList:@PriceGroupList? preparationMethodList:@PreparationMethodList? "
     "componentArticleList:@ComponentArticleList? linkedArticleList:@LinkedArticleList? "
     "barcodeList:@BarcodeList? relationArticleDiscountList:@RelationArticleDiscountList? "
     "askFor:s? nutritionalCharacteristics:@NutritionalCharacteristics? discontinued:b? "
     "stockSiUnit:s? specialBehaviour:s? ageCheckMinimumAge:i? oldestBestBeforeDate:s? "
     "shelfLifeInDays:i? shelfLifeInHours:i? priceDeviationMin:d? priceDeviationMax:d? "
     "availableForInterbranchOrdering:b?"},
    {"ArticleList", "article:@Article*"},
    {"ArticleNumberList", "articleNumbers:l*"},
    {"ArticleStock",
     "branchNumber:i? articleNumber:l changeTimestamp:T? stockId:l "
     "amountFree:q=decimalPlacesFree decimalPlacesFree:p? "
     "amountReserved:q=decimalPlacesReserved decimalPlacesReserved:p? "
     "amountIncoming:q=decimalPlacesIncoming decimalPlacesIncoming:p? ownAmountFree:d? "
     "ownAmountReserved:d? ownAmountIncoming:d? subArticle:@ArticleStock* isDayStockArticle:b"},
    {"Barcode",
     "barcodeId:l? description:s? barcode:s? barcodeDate:D? quantity:q=decimalPlaces? "
     "decimalPlaces:p? contentUnit:s? contentQuantity:q=contentQuantityDecimalPlaces? "
     "contentQuantityDecimalPlaces:p? purchasePrice:$? priceIncl:$? priceExcl:$? isCurrent:b?"},
    {"BarcodeList", "barcode:@Barcode*"},
    {"BpeConfiguration",
     "employeeBudgetsConfigured:b budgetPeriod:s budgetExceededAction:s budgetDefaultLimit:s"},
    {"Branch", "branchNumber:i branchName:s relationNumber:l? abbreviation:s extBranchId:s? "
               "isFullSlave:b? priceGroupNumber:i? workplaces:@WorkplaceList? countryCode:i "
               "countryIso3:s countryName:s"},
    {"BranchAccountNumber",
     "branchNumber:i extBranchId:s? accountNumber:i? purchaseAccountNumber:i? "
     "stockAccountNumber:i?"},
    {"BranchAccountNumberList", "branchAccountNumber:@BranchAccountNumber*"},
    {"BranchCostCenterNumber",
     "branchNumber:i extBranchId:s? turnoverCostCenterNumber:s? purchaseCostCenterNumber:s? "
     "stockCostCenterNumber:s?"},
    {"BranchCostCenterNumberList", "branchCostCenterNumber:@BranchCostCenterNumber*"},
    {"BranchGroupFilter", "branchGroups:i*"},
    {"BranchList", "branch:@Branch*"},
    {"BranchNumberList", "branchNumber:i*"},
    {"CategoryIdSet", "category:i*"},
    {"ChangedArticleGroup",
     "groupNumber:i parentGroupNumber:i? syncMarker:l? name:s text:s "
     "subGroupNumbers:@NumberList? sortOrder:i productNumbers:@NumberList? image:@Image? "
     "isDeleted:b?"},
    {"ChangedArticleGroupList", "changedArticleGroups:@ChangedArticleGroup*"},
    {"ComponentArticle",
     "articleNumber:l? quantity:q=decimalPlaces? decimalPlaces:p? description:s? "
     "invoiceText:s? receiptText:s? displayText:s? barcode:s? barcodeDate:D? contentUnit:s? "
     "contentQuantity:q=contentQuantityDecimalPlaces? contentQuantityDecimalPlaces:p? "
     "turnoverGroup:i? vatCode:i? vatPercentage:i? vatCodeAlternative:i? "
     "vatPercentageAlternative:i? purchasePrice:$? priceIncl:$? priceExcl:$? "
     "linkedArticleList:@LinkedArticleList?"},
    {"ComponentArticleList", "componentArticle:@ComponentArticle*"},
    {"ContractFrequencyList", "contractFrequency:s*"},
    {"ContractPeriod",
     "startDate:s? endDate:s? frequency:s contractPeriodCalculationMethod:s description:s?"},
    {"Course", "number:i name:s abbreviation:s sequenceNumber:i? isPresent:b? isRequested:b? "
               "requestedAt:s? isTableSet:b? tableSetAt:s? isWineServed:b? wineServedAt:s? type:s "
               "doSetTable:b canBeServedWithWine:b"},
    {"CreateProductResponse",
     "result:s productNumber:l articleNumbers:l* changeTimestamp:T? syncMarker:l? "
     "errorMessage:s"},
    {"CreateRelationResponse",
     "result:s relationNumber:l changeTimestamp:T? syncMarker:l? errorMessage:s"},
    {"CustomField",
     "fieldName:s dataType:s? isRequired:b? strValue:s? intValue:l? decimalPlaces:i? "
     "boolValue:b? dateValue:D? dateTimeValue:T? multiSelectInt:i*"},
    {"CustomFieldList", "customField:@CustomField*"},
    {"DietRestrictionList", "dietRestriction:@NutritionalCharacteristic*"},
    {"EftReceipt", "line:@EftReceiptLine*"},
    {"EftReceiptLine", "doubleHeight:b doubleWidth:b line:s"},
    {"EftTransactionDetails",
     "eftTransactionId:s txid:i amountCents:$ timestampPos:T timestampTerminal:T terminalId:s "
     "transactionId:s cardNumber:s customerReceipt:@EftReceipt customerReceiptCopies:i "
     "merchantReceipt:@EftReceipt merchantReceiptCopies:i requireCustomerSignature:b "
     "requireMerchantSignature:b requireIdentification:b eJournal:s eftDriver:s state:s "
     "employeeNumber:l authorizingEmployeeNumber:l"},
    {"Employee",
     "employeeNumber:l? extEmployeeId:s? syncMarker:l? createTimestamp:T? changeTimestamp:T? "
     "name:s? username:s? password:s? birthDate:D? phoneWork:s? phoneHome:s? phoneMobile:s? "
     "email:s? bankAccountNumber:s? bankName:s? rfid:l? extraText:s? active:b? categoryId:i? "
     "category:s? categoryIds:@CategoryIdSet? personNumber:s? "
     "customFieldList:@CustomFieldList?"},
    {"EmployeeList", "employee:@Employee*"},
    {"EmployeeNumberList", "employeeNumber:l*"},
    {"ExternalPaymentReceiptBarcode", "code:s codeType:s"},
    {"ExternalPaymentReceiptFooter",
     "text:s textAfter:s barcode:@ExternalPaymentReceiptBarcode printSeparate:b?"},
    {"ExternalPaymentReceiptText", "type:s? text:s requiresSignature:b?"},
    {"ExternalPaymentTransactionDetails",
     "externalPaymentId:s amount:$ externalTransactionReference:s "
     "receiptTexts:@ExternalPaymentReceiptText* receiptFooters:@ExternalPaymentReceiptFooter* "
     "cardType:s terminalId:s externalMethod:s"},
    {"FinancialGroup",
     "financialGroupType:s financialGroupSource:s financialGroupNumber:i? financialGroupId:s? "
     "financialGroupName:s accountNumber:i branchNumber:i? extBranchId:s? workplaceNumbers:i* "
     "fromFinancialDate:D? throughFinancialDate:D? fromFinancialDateTime:T? "
     "throughFinancialDateTime:T? financialPeriodClosed:b? quantity:q=decimalPlaces? "
     "decimalPlaces:p? inclAmount:$? exclAmount:$? purchaseAmount:$? "
     "vatGroupList:@VatGroupList? purchaseAccountNumber:i? stockAccountNumber:i? "
     "turnoverGroupCostCenter:s?"},
    {"FinancialGroupList", "financialGroup:@FinancialGroup*"},
    {"FindRelationResponse", "result:s relation:@Relation?"},
    {"getApiVersionResponse",
     "majorNumber:i minorNumber:i revisionNumber:i databaseMajorNumber:i? "
     "databaseMinorNumber:i? databaseRevisionNumber:i? serviceMajorNumber:i? "
     "serviceMinorNumber:i? serviceRevisionNumber:i? serviceBuildNumber:i? serviceDate:D? "
     "serviceDateTime:T? serviceProcessId:i? serviceHostname:s? serviceIpAddresses:s* "
     "serviceMinWorkerThreads:i? serviceMaxWorkerThreads:i? serverMajorNumber:i? "
     "serverMinorNumber:i? serverRevisionNumber:i? serverDate:D? serverDateTime:T? "
     "inDebugMode:b isSlaveApi:b? slaveApiType:s? slaveBranchNumber:i? slaveWorkplaceNumber:i? "
     "serviceVersionDisplayString:s?"},
    {"GetArticleGroupChangesRequest", "syncMarker:l? syncMarkerLimit:i? groupNumbers:i*"},
    {"GetArticleGroupChangesResponse", "changedArticleGroupList:@ChangedArticleGroupList"},
    {"getBranchesResponse", "branches:@BranchList"},
    {"getCurrentSyncMarkersResponse",
     "articleSyncMarker:l articleGroupSyncMarker:l? relationSyncMarker:l employeeSyncMarker:l "
     "invoiceSyncMarker:l receiptSyncMarker:l orderSyncMarker:l proposalSyncMarker:l? "
     "stockId:l? ticketCounterSaleSyncMarker:l? purchaseOrderSyncMarker:l? "
     "purchaseDeliverySyncMarker:l? relationPointsSyncMarker:l? "
     "cashDrawerBalancingSyncMarker:l? activitySyncMarker:l? packingSlipSyncMarker:l? "
     "dayStockConfigurationSyncMarker:l?"},
    {"getEmployeesRequest", "employeeNumbers:l* syncMarker:l? syncMarkerLimit:i?"},
    {"GetEmployeesResponse", "employeeList:@EmployeeList"},
    {"GetInvoicesRequest",
     "syncMarker:l? syncMarkerLimit:i? fromFinancialDate:D? throughFinancialDate:D? "
     "branchNumbers:i* employeeNumbers:l* relationNumbers:l* supplierRelationNumbers:l* "
     "articleNumbers:l* articleTurnoverGroups:i* articlePluNumbers:@TextList "
     "articleBarcodes:@TextList activityId:s? finalizeInvoices:b? invoiceIds:s* "
     "invoiceNumbers:@YearNumber* ownerFilter:@OwnerLabelFilter? "
     "branchGroupFilter:@BranchGroupFilter? includeLineList:b? "
     "branchInvoiceNumbers:@TransactionNumberList? "
     "contractFrequencyFilter:@ContractFrequencyList? directDebit:b? "
     "includeLastMailTimelineEvents:b? lastMailTimelineEventsFilter:@TimelineEventSubFilter? "
     "includeSigningTimelineEvents:b? signingTimelineEventsFilter:@TimelineEventSubFilter? "
     "includeDirectDebitTimelineEvents:b? "
     "directDebitTimelineEventsFilter:@TimelineEventSubFilter? includeOtherTimelineEvents:b? "
     "otherTimelineEventsFilter:@TimelineEventSubFilter?"},
    {"GetFinancialJournalRequest", "fromFinancialDate:D throughFinancialDate:D reference:s?"},
    {"GetFinancialJournalResponse",
     "financialGroupList:@FinancialGroupList financialPeriodClosed:b?"},
    {"GetInvoicesResponse", "invoiceList:@InvoiceList"},
    {"GetJournalsRequest", "fromFinancialDate:D throughFinancialDate:D branchNumbers:i* "
                           "journalFilterList:@JournalFilterList? reference:s?"},
    {"GetJournalsResponse", "journalList:@JournalList"},
    {"GetOrdersRequest",
     "syncMarker:l? syncMarkerLimit:i? fromFinancialDate:D? throughFinancialDate:D? "
     "branchNumbers:i* employeeNumbers:l* relationNumbers:l* supplierRelationNumbers:l* "
     "articleNumbers:l* articleTurnoverGroups:i* articlePluNumbers:@TextList "
     "articleBarcodes:@TextList activityId:s? orderTypeList:@OrderTypeList? orderIds:s* "
     "orderNumbers:@YearNumber* ownerFilter:@OwnerLabelFilter? "
     "branchGroupFilter:@BranchGroupFilter? includeLineList:b? "
     "contractFrequencyFilter:@ContractFrequencyList? includeLastMailTimelineEvents:b? "
     "lastMailTimelineEventsFilter:@TimelineEventSubFilter? includeSigningTimelineEvents:b? "
     "signingTimelineEventsFilter:@TimelineEventSubFilter? includeOtherTimelineEvents:b? "
     "otherTimelineEventsFilter:@TimelineEventSubFilter?"},
    {"GetOrdersResponse", "orderList:@OrderList"},
    {"GetPaymentMethodsRequest",
     "accountNumber:i? paymentMethodTypes:s* includeBpeConfiguration:b? includeGiftcardType:b?"},
    {"GetPaymentMethodsResponse", "paymentMethodList:@PaymentMethodList"},
    {"GetProductsRequest",
     "articleNumbers:l* groupNumbers:i* pluNumbers:@TextList onlyWebshop:b? onlyActive:b? "
     "syncMarker:l? syncMarkerLimit:i? syncMarkerExcludePreparationMethods:b? "
     "changedSinceTimestamp:T? changedSinceBranchNumber:i? "
     "includeAllArticlesOfSelectedProducts:b? productNumbers:l*"},
    {"GetProductsResponse", "productList:@ProductList"},
    {"GetReceiptsRequest",
     "syncMarker:l? syncMarkerLimit:i? fromFinancialDate:D? throughFinancialDate:D? "
     "branchNumbers:i* employeeNumbers:l* relationNumbers:l* supplierRelationNumbers:l* "
     "articleNumbers:l* articleTurnoverGroups:i* articlePluNumbers:@TextList "
     "articleBarcodes:@TextList activityId:s? includeOrderReferences:b? "
     "ownerFilter:@OwnerLabelFilter? branchGroupFilter:@BranchGroupFilter? receiptIds:s* "
     "includeLineList:b? includeLastMailTimelineEvents:b? "
     "lastMailTimelineEventsFilter:@TimelineEventSubFilter? includeSigningTimelineEvents:b? "
     "signingTimelineEventsFilter:@TimelineEventSubFilter? includeOtherTimelineEvents:b? "
     "otherTimelineEventsFilter:@TimelineEventSubFilter?"},
    {"GetReceiptsByOrderResponse", "result:s receiptList:@ReceiptList"},
    {"GetReceiptsResponse", "receiptList:@ReceiptList"},
    {"GetRelationsRequest", "relationNumbers:l* categoryId:i? syncMarker:l? syncMarkerLimit:i?"},
    {"GetRelationsResponse", "relationList:@RelationList"},
    {"GetStockRequest",
     "branchNumber:i articleNumbers:@ArticleNumberList stockId:l? dayStockOnlyFilter:b? "
     "branchNumbers:@BranchNumberList?"},
    {"GetStockResponse", "articleStocks:@ArticleStock*"},
    {"GetTurnoverGroupsRequest", "onlyActive:b?"},
    {"GetTurnoverGroupsResponse", "turnoverGroupList:@TurnoverGroupList"},
    {"getVatGroupListResponse", "vatGroup:@VatGroup*"},
    {"GiftcardType",
     "cardTypeId:s name:s sequenceNumber:i isDeleted:b turnoverGroupNumber:i paymentMethodId:s "
     "monthsValid:i? nonStandardValue:b issuable:b reloadable:b redeemable:b restitutable:b "
     "personalizable:b branchNumbers:i* availableValues:l* maximumBalance:l? minimumBalance:l?"},
    {"IdList", "id:s*"},
    {"Image",
     "imageId:l imageName:s imageHash:s imagePath:s imageUrl:s imageData:s imageDataResult:s "
     "thumbHash:s thumbPath:s thumbUrl:s thumbData:s thumbDataResult:s imageWidth:i "
     "imageHeight:i thumbWidth:i thumbHeight:i createdTimestamp:T changedTimestamp:T"},
    {"ImageList", "image:@Image*"},
    {"Invoice",
     "invoiceId:s? extInvoiceId:s? orderIds:@IdList? extOrderIds:@IdList? transactionString:s? "
     "syncMarker:l? invoiceNumber:@YearNumber? invoiceBarcode:s? invoiceType:s? "
     "employeeNumber:l? employeeName:s? entryTimestamp:T? relationNumber:l? relationName:s? "
     "relationCategoryId:i? relationBankAccountNumber:s? relationVatNumber:s? "
     "deliveryAddress:@Address? invoiceAddress:@Address? financialDate:D? "
     "financialBranchNumber:i? financialExtBranchId:s? workplaceNumber:i? entryBranchNumber:i? "
     "entryExtBranchId:s? reference:s? activityId:s? dueDate:D? totalInclAmount:$? "
     "totalExclAmount:$? vatMethod:s? vatGroupList:@VatGroupList? changeCounter:i? "
     "versionNumber:i? paidAmount:$? state:s? finalized:b? finalizedTimestamp:T? "
     "lineList:@LineList? paymentList:@PaymentList? answerList:@AnswerList? vatChange:s? "
     "vatCountryCode:i? vatCountryIso3:s? costCenter:s? creditedInvoiceId:s? creditedReason:s? "
     "orderCategoryNumber:i? sessionId:s? orderNumbers:@YearNumberList? "
     "packingSlipIds:@IdList? packingSlipNumbers:@YearNumberList? proposalIds:@IdList? "
     "extProposalIds:@IdList? proposalNumbers:@YearNumberList? salesCategoryNumber:i? "
     "salesCategoryDescription:s? branchGroupNumber:i? ownerId:s? "
     "branchInvoiceNumber:@TransactionNumber? invoiceReminder:i? targetInvoiceReminder:i? "
     "directDebit:b? mailedTimestamp:T? timelineEvents:@TimelineEventList? "
     "contractPeriod:@ContractPeriod?"},
    {"InvoiceList", "invoice:@Invoice*"},
    {"JsonValueList", "data:s*"},
    {"Journal",
     "financialDate:D journalFilterList:@JournalFilterList? branchNumber:i extBranchId:s? "
     "turnoverGroupList:@TurnoverGroupList? paymentList:@PaymentList? "
     "vatGroupList:@VatGroupList?"},
    {"JournalFilterList", "journalFilter:s*"},
    {"JournalList", "journal:@Journal*"},
    {"Line",
     "lineId:s? employeeNumber:l? articleNumber:l pluNumber:s? text:s? "
     "supplierRelationNumber:l? supplierRelationName:s? supplierArticleNumber:s? "
     "data:@LineData? courseNumber:i? menuHash:s? menuDescription:s? menuAmount:$? "
     "salePromotionData:@SalePromotionLineData? webhookData:@WebhookLineData? lineType:s? "
     "preparationList:@LineList? suppressDisposableComponent:b? tempId:s? retourReason:s? "
     "sequenceNumber:i? contractLines:@SalesLineContractLineList? uncondensedLines:@LineList? "
     "tempLineId:s? subLineType:s? articleAlterationId:i? lineKind:s? salesOrderLineId:s?"},
    {"LineData",
     "quantity:q=decimalPlaces decimalPlaces:p? deliveredQuantity:q=deliveredDecimalPlaces? "
     "deliveredDecimalPlaces:p? cancelledQuantity:q=cancelledDecimalPlaces? "
     "cancelledDecimalPlaces:p? price:$? priceExcl:$? originalPrice:$? originalPriceExcl:$? "
     "purchasePrice:$? averagePurchasePrice:d? "
     "exchangeRateBuyPrice:q=exchangeRateBuyPriceDecimalPlaces? "
     "exchangeRateBuyPriceDecimalPlaces:p? "
     "exchangeRateSellPrice:q=exchangeRateSellPriceDecimalPlaces? "
     "exchangeRateSellPriceDecimalPlaces:p? exchangeRateMultiplier:i? turnoverGroup:i? "
     "turnoverGroupName:s? turnoverGroupType:s? turnoverGroupAccountNumber:i? "
     "turnoverGroupCostCenter:s? vatCode:i? vatPercentage:i? pricePerQuantity:i? siUnit:s? "
     "discountType:s? discountPercentage:i? discountAmount:$? discountAmountExcl:$? bpeId:s? "
     "bpeDescription:s? bpeAmount:$? bpeAmountExcl:$? menuId:s? menuLinesId:s? "
     "totalInclAmount:$? totalExclAmount:$? priceType:s? purchaseAccountNumber:i? "
     "stockAccountNumber:i? bpeAccordationEmployeeNumber:l? redeemedVoucherIssuanceId:s? "
     "pendingVoucherIssuanceStartTs:s?"},
    {"LineList", "line:@Line*"},
    {"LinkedArticle", "articleNumber:l quantity:q=decimalPlaces decimalPlaces:p?"},
    {"LinkedArticleList", "linkedArticle:@LinkedArticle*"},
    {"NumberList", "number:l*"},
    {"NutritionalCharacteristic",
     "id:i? name:s? abbreviation:s? type:s? isPresent:b? presence:s? sourceNumber:l?"},
    {"NutritionalCharacteristics",
     "allergenList:@AllergenList? dietRestrictionList:@DietRestrictionList?"},
    {"Order",
     "orderId:s extOrderId:s? invoiceIds:@IdList? extInvoiceIds:@IdList? transactionString:s? "
     "syncMarker:l? orderType:s? entryBranchNumber:i? entryExtBranchId:s? employeeNumber:l? "
     "employeeName:s? entryTimestamp:T? relationNumber:l? relationName:s? "
     "relationCategoryId:i? relationBankAccountNumber:s? relationVatNumber:s? "
     "deliveryAddress:@Address? invoiceAddress:@Address? financialDate:D? "
     "financialBranchNumber:i? financialExtBranchId:s? workplaceNumber:i? reference:s? "
     "activityId:s? totalInclAmount:$? totalExclAmount:$? vatMethod:s? "
     "vatGroupList:@VatGroupList? deliveryMethod:s? deliveryDate:D? deliveryPeriodBegin:T? "
     "deliveryPeriodEnd:T? paymentMethod:s? changeCounter:i? versionNumber:i? prepaidAmount:$? "
     "fullyPaid:b? deliveryState:s? cancelState:s? completeState:s? tableNumber:i? "
     "tableSubNumber:i? tableDescription:s? numberOfGuests:i? orderNumber:@YearNumber? "
     "branchOrderNumber:@WorkplaceYearNumber? orderBarcode:s? orderCategoryNumber:i? "
     "orderCategoryDescription:s? onDeliveryUrl:s? onInvoiceUrl:s? lineList:@LineList? "
     "paymentList:@PaymentList? vatChange:s? vatCountryCode:i? vatCountryIso3:s? "
     "webhookSessionData:@WebhookSessionData? cateringOrderNumber:@YearNumber? "
     "invoiceNumbers:@YearNumberList? packingSlipIds:@IdList? "
     "packingSlipNumbers:@YearNumberList? proposalId:s? extProposalId:s? "
     "proposalNumber:@YearNumber? branchGroupNumber:i? ownerId:s? "
     "branchInvoiceNumbers:@TransactionNumberList? timelineEvents:@TimelineEventList? "
     "contractPeriod:@ContractPeriod?"},
    {"OrderList", "order:@Order*"},
    {"OrderTypeList", "orderType:s*"},
    {"OwnerLabelFilter", "ownerLabels:s*"},
    {"Payment",
     "paymentId:s? financialDate:D? entryTimestamp:T? branchNumber:i? extBranchId:s? "
     "workplaceNumber:i? employeeNumber:l? employeeName:s? method:s description:s? amount:$ "
     "paymentMethodType:s? accountNumber:i? branchAccountNumberList:@BranchAccountNumberList? "
     "eftTransactionDetails:@EftTransactionDetails? giftcardNumber:s? externalPaymentId:s? "
     "externalPaymentTransactionDetails:@ExternalPaymentTransactionDetails? "
     "externalReference:s?"},
    {"PaymentList", "payment:@Payment*"},
    {"PaymentMethod",
     "method:s description:s buttonText:s allowNegativeAmount:b active:b? type:s? "
     "accountNumber:i? branchAccountNumberList:@BranchAccountNumberList? "
     "depositPaymentMethod:s? hasExternalPaymentWebhook:b? bpeConfiguration:@BpeConfiguration? "
     "giftcardType:@GiftcardType?"},
    {"PaymentMethodList", "paymentMethod:@PaymentMethod*"},
    {"PreparationMethod",
     "articleNumber:l? description:s priceIncl:$? priceExcl:$? vatCode:i? vatPercentage:i? "
     "vatCodeAlternative:i? vatPercentageAlternative:i? syncMarker:l? closeAfterSelection:b "
     "groupNumber:i? groupName:s? maxOneSelection:b selectionRequired:b "
     "nutritionalCharacteristics:@NutritionalCharacteristics? selectionRangeMin:i? "
     "selectionRangeMax:i?"},
    {"PreparationMethodList", "preparationMethod:@PreparationMethod*"},
    {"PriceGroup",
     "priceGroupNumber:i description:s? priceIncl:$? priceExcl:$? discountPercentage:i? "
     "minimumAmount:i?"},
    {"PriceGroupList", "priceGroup:@PriceGroup*"},
    {"Product",
     "productNumber:l? syncMarker:l? description:s? extraText:s? articleList:@ArticleList? "
     "groupNumbers:i* sortOrderGroupList:@SortOrderGroupList?"},
    {"ProductList", "product:@Product*"},
    {"Receipt",
     "receiptId:s extReceiptId:s? orderIds:@IdList? extOrderIds:@IdList? transactionString:s? "
     "syncMarker:l? receiptNumber:@WorkplaceYearNumber? receiptBarcode:s? receiptType:s "
     "employeeNumber:l employeeName:s entryTimestamp:T relationNumber:l? relationName:s? "
     "relationCategoryId:i? relationBankAccountNumber:s? financialDate:D "
     "financialBranchNumber:i financialExtBranchId:s? workplaceNumber:i entryBranchNumber:i? "
     "entryExtBranchId:s? reference:s? activityId:s? totalInclAmount:$ totalExclAmount:$ "
     "vatMethod:s vatGroupList:@VatGroupList? changeCounter:i? versionNumber:i? paidAmount:$ "
     "state:s lineList:@LineList? paymentList:@PaymentList? answerList:@AnswerList? "
     "vatChange:s? numberOfGuests:i? creditedReceiptId:s? tableNumber:i? tableSubNumber:i? "
     "salesCategoryNumber:i? salesCategoryDescription:s? branchGroupNumber:i? ownerId:s? "
     "timelineEvents:@TimelineEventList?"},
    {"ReceiptList", "receipt:@Receipt*"},
    {"Relation",
     "relationNumber:l? extRelationId:s? syncMarker:l? createTimestamp:T? changeTimestamp:T? "
     "active:b? name:s? address:s? zipcode:s? city:s? country:s? deliveryAddress:s? "
     "deliveryZipcode:s? deliveryCity:s? deliveryCountry:s? contact:s? telephone:s? mobile:s? "
     "email:s? website:s? birthDate:D? relationCode:s? points:i? balance:l? "
     "priceGroupNumber:i? discountPercentage:i? categoryId:i? categoryIds:@CategoryIdSet? "
     "cardNumber:s? bankAccountNumber:s? creditLimit:l? paymentWithinDays:i? vatNumber:s? "
     "commerceNumber:s? extraText:s? defaultVatMethod:s? neverPrintOrEmailReceipt:b? "
     "alwaysPrintReceipt:b? alwaysPrintLargeFormatReceipt:b? alwaysEmailReceipt:b? "
     "condenseCombinedInvoice:b? imageList:@ImageList? customFieldList:@CustomFieldList? "
     "contactList:@RelationList? relationArticleDiscountList:@RelationArticleDiscountList? "
     "companyName:s? branchesNonPurchasable:i* cardNumbers:s* invoiceCredit:d? "
     "accountBalance:d? salePromotionIds:@IdList? directDebit:b? reminderEmail:s? "
     "canEarnPoints:b? canRedeemPoints:b? cantRedeemPointsReason:s?"},
    {"RelationArticleDiscount",
     "relationArticleDiscountId:l? relationNumber:l? articleNumber:l? "
     "articleDiscountGroupNumber:i? minimumAmount:q=minimumAmountDecimalPlaces? "
     "minimumAmountDecimalPlaces:p? discountPercentage:i? priceIncl:$? priceExcl:$?"},
    {"RelationArticleDiscountList", "relationArticleDiscount:@RelationArticleDiscount*"},
    {"RelationList", "relation:@Relation*"},
    {"SalePromotionLineData",
     "salePromotionId:s salePromotionLineId:s description:s? setNumber:i?"},
    {"SalesLineContractLine",
     "lineNumber:i articleNumber:l quantity:d priceIncl:d priceExcl:d amountIncl:d "
     "amountExcl:d frequency:s startDate:s?"},
    {"SalesLineContractLineList", "contractLine:@SalesLineContractLine*"},
    {"SalesPrice",
     "salesPriceNumber:i description:s? startDate:D? endDate:D? priceIncl:$? priceExcl:$? "
     "discountPercentage:i? minimumAmount:i?"},
    {"SalesPriceList", "salesPrice:@SalesPrice*"},
    {"SetStockRequest",
     "branchNumber:i articleNumber:l amount:q=decimalPlaces decimalPlaces:p? employeeNumber:l? "
     "reference:s?"},
    {"SetStockResponse", "result:s stockId:l?"},
    {"SortOrderGroup", "groupNumber:i sortOrder:i"},
    {"SortOrderGroupList", "sortOrderGroup:@SortOrderGroup*"},
    {"Text", "text:s"},
    {"TextList", "text:@Text*"},
    {"TimelineEvent",
     "id:s? entity:@TimelineEventEntity employeeNumber:l? workplaceKey:@WorkplaceIdentifier? "
     "branchGroupId:i? ownerId:s? activityId:s? apiIdent:s? category:s type:s data:s? "
     "eventTs:s createdTs:s?"},
    {"TimelineEventEntity",
     "type:s uuid:s? version:i? yearNumber:@YearNumber? yearSubNumber:@YearNumberPart? "
     "reference:s?"},
    {"TimelineEventList", "event:@TimelineEvent*"},
    {"TimelineEventSubFilter",
     "ids:@IdList? employeeNumbers:@EmployeeNumberList? "
     "workplaceKeys:@WorkplaceIdentifierList? apiIdents:@ApiIdentList? "
     "types:@TimelineEventTypeList? data:@JsonValueList? from:s? through:s?"},
    {"TimelineEventTypeList", "type:s*"},
    {"TransactionNumber", "displayString:s? branch:l workplace:l? number:@YearNumber"},
    {"TransactionNumberList", "transactionNumber:@TransactionNumber*"},
    {"TurnoverGroup",
     "turnoverGroupType:s turnoverGroup:i turnoverGroupName:s inclAmount:$? exclAmount:$? "
     "defaultAccountNumber:i? accountNumber:i? allowPointsDistribution:b? "
     "allowPointsPayment:b? allowDiscount:b? branchAccountNumberList:@BranchAccountNumberList? "
     "defaultPurchaseAccountNumber:i? purchaseAccountNumber:i? defaultStockAccountNumber:i? "
     "stockAccountNumber:i? defaultVatCode:i? "
     "branchCostCenterNumberList:@BranchCostCenterNumberList? "
     "defaultTurnoverCostCenterNumber:s? turnoverCostCenterNumber:s? "
     "defaultPurchaseCostCenterNumber:s? purchaseCostCenterNumber:s? "
     "defaultStockCostCenterNumber:s? stockCostCenterNumber:s? topupPaymentId:s? "
     "quantityPerLabel:i?"},
    {"TurnoverGroupList", "turnoverGroup:@TurnoverGroup*"},
    {"UpdateProductResponse",
     "result:s existingArticleNumbers:l* newArticleNumbers:l* changeTimestamp:T? syncMarker:l? "
     "errorMessage:s"},
    {"UpdateRelationResponse", "result:s errorMessage:s changeTimestamp:T? syncMarker:l?"},
    {"UpdateStockRequest",
     "branchNumber:i articleNumber:l amountChanged:q=decimalPlaces decimalPlaces:p? "
     "employeeNumber:l? reference:s?"},
    {"UpdateStockResponse", "result:s stockId:l?"},
    {"VatGroup",
     "branchNumber:i? extBranchId:s? countryCode:i? countryIso3:s? vatCode:i vatPercentage:l "
     "exclAmount:$? vatAmount:$? accountNumber:i?"},
    {"VatGroupList", "vatGroup:@VatGroup*"},
    {"WebhookExternalDiscount",
     "discountId:s discountDescription:s webhookConsumerId:s discountPercentage:i? "
     "discountAmount:i? discountType:s?"},
    {"WebhookLineData",
     "webhookLineId:s webhookConsumerId:s? webhookExternalDiscount:@WebhookExternalDiscount?"},
    {"WebhookSessionData", "webhookSessionId:s"},
    {"Workplace", "workplaceNumber:i workplaceName:s isMobile:b workplaceType:s? isSlave:b? "
                  "lastSlaveSync:T? priceGroupNumber:i? extWorkplaceId:s?"},
    {"WorkplaceIdentifier", "branchNumber:i workplaceNumber:i"},
    {"WorkplaceIdentifierList", "workplaceIdentifier:@WorkplaceIdentifier*"},
    {"WorkplaceList", "workplace:@Workplace*"},
    {"WorkplaceYearNumber", "branchNumber:i workplaceNumber:i year:i number:l"},
    {"YearNumber", "year:i number:l"},
    {"YearNumberList", "yearNumber:@YearNumber*"},
    {"YearNumberPart", "year:i number:l part:i"},
};
#define NTYPES (sizeof type_descs / sizeof type_descs[0])

/* The operations: request element, its one parameter, the response element. */
struct op {
    const char *name;
    const char *param;      /* child of the request element, or NULL */
    const char *param_type; /* its complex type */
    bool param_required;    /* minOccurs 1: sent (perhaps empty) even without fields */
    const char *response;   /* the response element (named as in the WSDL message) */
    const char *response_type;
    const char *answer_result; /* an in-band result that is an answer, not a failure */
};

static const struct op ops[] = {
    {"getApiVersion", NULL, NULL, false, "getApiVersionResponse", "getApiVersionResponse", NULL},
    {"getCurrentSyncMarkers", NULL, NULL, false, "getCurrentSyncMarkersResponse",
     "getCurrentSyncMarkersResponse", NULL},
    {"getBranches", NULL, NULL, false, "getBranchesResponse", "getBranchesResponse", NULL},
    {"getVatGroupList", NULL, NULL, false, "getVatGroupListResponse", "getVatGroupListResponse",
     NULL},
    {"getTurnoverGroups", "request", "GetTurnoverGroupsRequest", true, "GetTurnoverGroupsResponse",
     "GetTurnoverGroupsResponse", NULL},
    {"getPaymentMethods", NULL, NULL, false, "GetPaymentMethodsResponse",
     "GetPaymentMethodsResponse", NULL},
    {"getPaymentMethodsV2", "request", "GetPaymentMethodsRequest", true,
     "GetPaymentMethodsResponse", "GetPaymentMethodsResponse", NULL},
    {"getEmployees", "request", "getEmployeesRequest", false, "GetEmployeesResponse",
     "GetEmployeesResponse", NULL},
    {"getReceipts", "request", "GetReceiptsRequest", true, "GetReceiptsResponse",
     "GetReceiptsResponse", NULL},
    {"getInvoices", "request", "GetInvoicesRequest", true, "GetInvoicesResponse",
     "GetInvoicesResponse", NULL},
    {"getOrders", "request", "GetOrdersRequest", true, "GetOrdersResponse", "GetOrdersResponse",
     NULL},
    {"getReceiptsByOrder", "orderId", NULL, true, "GetReceiptsByOrderResponse",
     "GetReceiptsByOrderResponse", "GET-RECEIPTS-BY-ORDER-RESULT-NOT-FOUND"},
    {"getProducts", "request", "GetProductsRequest", true, "GetProductsResponse",
     "GetProductsResponse", NULL},
    {"getArticleGroupChanges", "request", "GetArticleGroupChangesRequest", true,
     "GetArticleGroupChangesResponse", "GetArticleGroupChangesResponse", NULL},
    {"getRelations", "request", "GetRelationsRequest", false, "GetRelationsResponse",
     "GetRelationsResponse", NULL},
    {"findRelation", "relation", "Relation", false, "FindRelationResponse", "FindRelationResponse",
     "FIND-RELATION-RESULT-NOT-FOUND"},
    {"createRelation", "relation", "Relation", false, "CreateRelationResponse",
     "CreateRelationResponse", NULL},
    {"updateRelation", "relation", "Relation", false, "UpdateRelationResponse",
     "UpdateRelationResponse", NULL},
    {"getStock", "request", "GetStockRequest", true, "GetStockResponse", "GetStockResponse", NULL},
    {"getJournals", "request", "GetJournalsRequest", true, "GetJournalsResponse",
     "GetJournalsResponse", NULL},
    {"getFinancialJournal", "request", "GetFinancialJournalRequest", true,
     "GetFinancialJournalResponse", "GetFinancialJournalResponse", NULL},
    {"setStock", "request", "SetStockRequest", true, "SetStockResponse", "SetStockResponse", NULL},
    {"updateStock", "request", "UpdateStockRequest", true, "UpdateStockResponse",
     "UpdateStockResponse", NULL},
    {"createProduct", "product", "Product", true, "CreateProductResponse", "CreateProductResponse",
     NULL},
    {"updateProduct", "product", "Product", true, "UpdateProductResponse", "UpdateProductResponse",
     NULL},
};
#define NOPS (sizeof ops / sizeof ops[0])

/* The tables, indexed once: kinds resolved, types linked by index. */
enum fkind {
    F_TEXT,
    F_INT,
    F_LONG,
    F_BOOL,
    F_DECIMAL,
    F_CENTS,
    F_QTY,
    F_PLACES,
    F_DATE,
    F_DATETIME,
    F_COMPLEX,
};

struct field {
    char *name;
    enum fkind kind;
    bool optional; /* minOccurs 0 */
    bool repeated; /* maxOccurs unbounded */
    int type;      /* F_COMPLEX: index in schema.types */
    int partner;   /* F_QTY: index of its places field; F_PLACES: of its quantity */
};

struct xtype {
    const char *name;
    struct field *f;
    int n;
    bool list;    /* a single repeated element: an array in JSON */
    bool box;     /* a single required scalar (Text): as a list item, that scalar */
    int empty_ok; /* may be sent empty where required: 1, 0, or -1 not yet known */
};

static struct {
    struct xtype types[NTYPES];
    int param[NOPS], response[NOPS]; /* type indexes per operation, -1 for none */
} schema;

static pthread_once_t schema_once = PTHREAD_ONCE_INIT;

static int type_index(const char *name, size_t len)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (strlen(type_descs[i].name) == len && strncmp(type_descs[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* The tables are part of the program: a mistake in them is a bug, found by
 * the unit tests, not a run-time condition. */
static void schema_bug(const char *type, const char *what)
{
    fprintf(stderr, "mplus schema table, type %s: %s\n", type, what);
    abort();
}

static const struct {
    char code;
    enum fkind kind;
} kind_codes[] = {
    {'s', F_TEXT},    {'i', F_INT},      {'l', F_LONG},    {'b', F_BOOL},
    {'d', F_DECIMAL}, {'$', F_CENTS},    {'q', F_QTY},     {'p', F_PLACES},
    {'D', F_DATE},    {'T', F_DATETIME}, {'@', F_COMPLEX},
};

static void parse_desc(struct xtype *t, const struct type_desc *d)
{
    t->name = d->name;
    t->empty_ok = -1;
    size_t cap = 1;
    for (const char *p = d->fields; *p; p++)
        cap += *p == ' ';
    t->f = calloc(cap, sizeof *t->f);
    const char **places = calloc(cap, sizeof *places); /* q=P: where P's name starts */
    if (t->f == NULL || places == NULL)
        schema_bug(d->name, "out of memory");
    for (const char *p = d->fields; *p; p += strspn(p, " ")) {
        size_t len = strcspn(p, " ");
        const char *colon = memchr(p, ':', len), *end = p + len;
        if (colon == NULL || colon == p || colon + 1 == end)
            schema_bug(d->name, "field without name:kind");
        struct field *f = &t->f[t->n];
        f->name = strndup(p, (size_t)(colon - p));
        if (f->name == NULL)
            schema_bug(d->name, "out of memory");
        f->type = f->partner = -1;
        if (end[-1] == '?' || end[-1] == '*') {
            f->optional = true;
            f->repeated = end[-1] == '*';
            end--;
        }
        const char *k = colon + 1;
        size_t c = 0;
        while (c < sizeof kind_codes / sizeof *kind_codes && kind_codes[c].code != *k)
            c++;
        if (c == sizeof kind_codes / sizeof *kind_codes)
            schema_bug(d->name, "unknown kind");
        f->kind = kind_codes[c].kind;
        if (f->kind == F_COMPLEX && (f->type = type_index(k + 1, (size_t)(end - k - 1))) < 0)
            schema_bug(d->name, "unknown type");
        if ((f->kind == F_QTY) != (k[1] == '='))
            schema_bug(d->name, "q needs =places, and only q takes it");
        if (f->kind == F_QTY)
            places[t->n] = k + 2;
        t->n++;
        p += len;
    }
    /* Link each quantity and its places field both ways. */
    for (int i = 0; i < t->n; i++) {
        if (places[i] == NULL)
            continue;
        size_t plen = strcspn(places[i], " ?*");
        for (int j = 0; j < t->n; j++) {
            if (t->f[j].kind == F_PLACES && strlen(t->f[j].name) == plen &&
                strncmp(t->f[j].name, places[i], plen) == 0) {
                t->f[i].partner = j;
                t->f[j].partner = i;
            }
        }
        if (t->f[i].partner < 0)
            schema_bug(d->name, "quantity without its places field");
    }
    for (int i = 0; i < t->n; i++)
        if (t->f[i].kind == F_PLACES && t->f[i].partner < 0)
            schema_bug(d->name, "places field without a quantity");
    free(places);
}

static bool empty_ok(struct xtype *t);

static void schema_init(void)
{
    for (size_t i = 0; i < NTYPES; i++)
        parse_desc(&schema.types[i], &type_descs[i]);
    for (size_t i = 0; i < NTYPES; i++) {
        struct xtype *t = &schema.types[i];
        t->list = t->n == 1 && t->f[0].repeated;
    }
    /* List items with one required scalar (TextList's Text) read as that
     * scalar: ["0012", "0013"] rather than [{"text": "0012"}, ...]. */
    for (size_t i = 0; i < NTYPES; i++) {
        struct xtype *t = &schema.types[i];
        if (!t->list || t->f[0].kind != F_COMPLEX)
            continue;
        struct xtype *item = &schema.types[t->f[0].type];
        item->box = item->n == 1 && !item->f[0].optional && item->f[0].kind != F_COMPLEX;
    }
    for (size_t i = 0; i < NTYPES; i++)
        empty_ok(&schema.types[i]);
    for (size_t i = 0; i < NOPS; i++) {
        const struct op *o = &ops[i];
        schema.param[i] = o->param_type ? type_index(o->param_type, strlen(o->param_type)) : -1;
        schema.response[i] = type_index(o->response_type, strlen(o->response_type));
        if ((o->param_type && schema.param[i] < 0) || schema.response[i] < 0)
            schema_bug(o->name, "operation names an unknown type");
    }
}

static int op_index(const char *name)
{
    pthread_once(&schema_once, schema_init);
    for (size_t i = 0; name && i < NOPS; i++)
        if (strcmp(ops[i].name, name) == 0)
            return (int)i;
    return -1;
}

bool mplus_op_known(const char *op)
{
    return op_index(op) >= 0;
}

static int field_index(const struct xtype *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->f[i].name, name) == 0)
            return i;
    return -1;
}

/* Whether a required element of type t may be sent with no content of its own
 * (a list wrapper, a request whose fields are all optional). Worked out for
 * every type once, in schema_init. */
static bool empty_ok(struct xtype *t)
{
    if (t->empty_ok >= 0)
        return t->empty_ok;
    t->empty_ok = 0; /* a type that needs itself cannot be empty */
    for (int i = 0; i < t->n; i++) {
        const struct field *f = &t->f[i];
        if (f->optional)
            continue;
        if (f->kind != F_COMPLEX || f->repeated || !empty_ok(&schema.types[f->type]))
            return false;
    }
    t->empty_ok = 1;
    return true;
}

static const char *kind_name(const struct field *f)
{
    switch (f->kind) {
    case F_TEXT:
        return "text";
    case F_INT:
        return "xsd:int";
    case F_LONG:
        return "xsd:long";
    case F_BOOL:
        return "a boolean";
    case F_DECIMAL:
        return "a decimal";
    case F_CENTS:
        return "money";
    case F_QTY:
        return "a quantity";
    case F_PLACES:
        return "decimal places";
    case F_DATE:
        return "a date";
    case F_DATETIME:
        return "a date-time";
    case F_COMPLEX:
        return schema.types[f->type].name;
    }
    return "?";
}

/* ---- messages --------------------------------------------------------------------- */

/* ---- numbers ---------------------------------------------------------------------- */

/* -?digits[.digits] to an unscaled integer and its scale, exactly. */
static int dec_parse(const char *s, int64_t *value, int *scale, char *err, size_t errlen)
{
    const char *p = s;
    bool neg = *p == '-', dot = false;
    p += neg;
    uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int digits = 0, sc = 0;
    for (; *p; p++) {
        if (*p == '.' && !dot && digits > 0) {
            dot = true;
            continue;
        }
        if (*p < '0' || *p > '9') {
            gw_errf(err, errlen, "'%.40s' is not a decimal number (digits, '-' and '.' only)", s);
            return -1;
        }
        unsigned d = (unsigned)(*p - '0');
        if (mag > (limit - d) / 10) {
            gw_errf(err, errlen, "'%.40s' is too large", s);
            return -1;
        }
        mag = mag * 10 + d;
        digits++;
        sc += dot;
    }
    if (digits == 0 || (dot && sc == 0)) {
        gw_errf(err, errlen, "'%.40s' is not a decimal number (digits, '-' and '.' only)", s);
        return -1;
    }
    if (sc > MAX_PLACES) {
        gw_errf(err, errlen, "'%.40s' has more than %d decimals", s, MAX_PLACES);
        return -1;
    }
    *value = neg ? (mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    *scale = sc;
    return 0;
}

int mplus_cents_parse(const char *s, int64_t *cents, char *err, size_t errlen)
{
    int64_t v;
    int sc;
    if (dec_parse(s, &v, &sc, err, errlen) != 0)
        return -1;
    while (sc > 2 && v % 10 == 0) { /* "1.230" is exactly 1.23 */
        v /= 10;
        sc--;
    }
    if (sc > 2) {
        gw_errf(err, errlen,
                "'%.40s' has more than 2 decimals: Mplus keeps money in cents, round it first", s);
        return -1;
    }
    for (; sc < 2; sc++) {
        if (v > INT64_MAX / 10 || v < INT64_MIN / 10) {
            gw_errf(err, errlen, "'%.40s' is too large for cents", s);
            return -1;
        }
        v *= 10;
    }
    *cents = v;
    return 0;
}

int mplus_quantity_parse(const char *s, int64_t *value, int *places, char *err, size_t errlen)
{
    return dec_parse(s, value, places, err, errlen);
}

static void scaled_format(int64_t v, int places, char *out, size_t outlen)
{
    char rev[24];
    int n = 0;
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        rev[n++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag > 0);
    while (n <= places)
        rev[n++] = '0';
    char buf[MPLUS_NUM_LEN];
    size_t k = 0;
    if (v < 0)
        buf[k++] = '-';
    for (int i = n - 1; i >= 0; i--) {
        buf[k++] = rev[i];
        if (i == places && places > 0)
            buf[k++] = '.';
    }
    buf[k] = '\0';
    gw_strlcpy(out, buf, outlen);
}

void mplus_cents_format(int64_t cents, char *out, size_t outlen)
{
    scaled_format(cents, 2, out, outlen);
}

int mplus_quantity_format(int64_t value, int places, char *out, size_t outlen)
{
    if (places < 0 || places > MAX_PLACES)
        return -1;
    scaled_format(value, places, out, outlen);
    return 0;
}

/*
 * A JSON number or string as decimal text. A JSON real goes through its
 * shortest round-trip form, which is the text it was written as for any
 * number of up to 15 significant digits ("9.95", not 9.9499999999999993).
 */
static bool decimal_text(json_t *v, char *buf, size_t len)
{
    if (json_is_string(v)) {
        if (json_string_length(v) >= len)
            return false;
        memcpy(buf, json_string_value(v), json_string_length(v) + 1);
        return strlen(buf) == json_string_length(v);
    }
    if (json_is_integer(v)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        return true;
    }
    if (json_is_real(v) && isfinite(json_real_value(v))) {
        double d = json_real_value(v);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return true;
    }
    return false;
}

/* ---- dates ------------------------------------------------------------------------ */

/* SoapMplusDateTime: wall clock and its UTC offset in minutes, east positive
 * ("timezone" 120 = +02:00), as the official clients read and write it. */
struct mtime {
    int year, mon, day, hour, min, sec, tz;
};

static int days_in(int year, int mon)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return mon == 2 && leap ? 29 : d[mon - 1];
}

static bool valid_time(const struct mtime *t, bool with_time)
{
    if (t->year < 1 || t->year > 9999 || t->mon < 1 || t->mon > 12 || t->day < 1 ||
        t->day > days_in(t->year, t->mon))
        return false;
    return !with_time || (t->hour >= 0 && t->hour <= 23 && t->min >= 0 && t->min <= 59 &&
                          t->sec >= 0 && t->sec <= 59 && t->tz >= -18 * 60 && t->tz <= 18 * 60);
}

static bool take_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool take_char(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

/*
 * "YYYY-MM-DD", or with with_time "YYYY-MM-DDTHH:MM:SS[.fff](Z|+hh:mm|+hhmm)".
 * Mplus keeps whole seconds, so fractional digits are dropped; the offset is
 * required: a wall clock without one is not a point in time.
 */
static bool iso_parse(const char *s, bool with_time, struct mtime *t)
{
    const char *p = s;
    memset(t, 0, sizeof *t);
    if (!take_digits(&p, 4, &t->year) || !take_char(&p, '-') || !take_digits(&p, 2, &t->mon) ||
        !take_char(&p, '-') || !take_digits(&p, 2, &t->day))
        return false;
    if (with_time) {
        if (!take_char(&p, 'T') || !take_digits(&p, 2, &t->hour) || !take_char(&p, ':') ||
            !take_digits(&p, 2, &t->min) || !take_char(&p, ':') || !take_digits(&p, 2, &t->sec))
            return false;
        if (take_char(&p, '.')) {
            int digit;
            if (!take_digits(&p, 1, &digit))
                return false;
            while (*p >= '0' && *p <= '9')
                p++;
        }
        if (!take_char(&p, 'Z')) {
            int sign = *p == '+' ? 1 : *p == '-' ? -1 : 0, hh, mm;
            if (sign == 0)
                return false;
            p++;
            if (!take_digits(&p, 2, &hh))
                return false;
            take_char(&p, ':');
            if (!take_digits(&p, 2, &mm) || mm > 59)
                return false;
            t->tz = sign * (hh * 60 + mm);
        }
    }
    return *p == '\0' && valid_time(t, with_time);
}

static void iso_format(const struct mtime *t, bool with_time, char *out, size_t outlen)
{
    if (!with_time) {
        snprintf(out, outlen, "%04d-%02d-%02d", t->year, t->mon, t->day);
        return;
    }
    int a = t->tz < 0 ? -t->tz : t->tz;
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", t->year, t->mon, t->day,
             t->hour, t->min, t->sec, t->tz < 0 ? '-' : '+', a / 60, a % 60);
}

/* ---- building requests ------------------------------------------------------------ */

struct build {
    const char *op;
    xmlNsPtr ns;
    char path[512]; /* where in the request we are, for messages */
    size_t plen;
    int depth;
    char *err;
    size_t errlen;
};

static int berr(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int berr(struct build *b, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* "request.branchNumber is required", "request.price: '9.999' has..." */
    bool phrase = strncmp(what, "is ", 3) == 0 || strncmp(what, "must ", 5) == 0 ||
                  strncmp(what, "holds ", 6) == 0;
    gw_errf(b->err, b->errlen, "%s: %s%s%s", b->op, b->path,
            b->path[0] ? (phrase ? " " : ": ") : "", what);
    return -1;
}

static size_t path_push(struct build *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static size_t path_push(struct build *b, const char *fmt, ...)
{
    size_t mark = b->plen;
    if (b->plen + 1 < sizeof b->path) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->path + b->plen, sizeof b->path - b->plen, fmt, ap);
        va_end(ap);
        b->plen = strlen(b->path);
    }
    return mark;
}

static void path_pop(struct build *b, size_t mark)
{
    b->plen = mark;
    b->path[mark] = '\0';
}

static xmlNodePtr add(struct build *b, xmlNodePtr parent, const char *name, const char *text)
{
    xmlNodePtr n = text ? xmlNewTextChild(parent, b->ns, BAD_CAST name, BAD_CAST text)
                        : xmlNewChild(parent, b->ns, BAD_CAST name, NULL);
    if (n == NULL)
        berr(b, "out of memory");
    return n;
}

static int add_int(struct build *b, xmlNodePtr parent, const char *name, long long v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", v);
    return add(b, parent, name, buf) ? 0 : -1;
}

/* XML 1.0 cannot carry most control characters, even escaped. */
static bool xml_text_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
            return false;
    return true;
}

static int emit_type(struct build *b, xmlNodePtr parent, struct xtype *t, json_t *obj);
static int emit_field(struct build *b, xmlNodePtr parent, struct xtype *t, const struct field *f,
                      json_t *v, json_t *obj);

static int emit_integer(struct build *b, xmlNodePtr parent, const struct field *f, json_t *v)
{
    int64_t n;
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (!json_is_string(v) || !gw_strtoi64(json_string_value(v), &n))
        return berr(b, "must be an integer (%s)", kind_name(f));
    if (f->kind == F_INT && (n < INT32_MIN || n > INT32_MAX))
        return berr(b, "%lld does not fit xsd:int", (long long)n);
    return add_int(b, parent, f->name, (long long)n);
}

static int emit_quantity(struct build *b, json_t *v, int64_t *value, int *places)
{
    char text[64], why[160];
    if (!decimal_text(v, text, sizeof text))
        return berr(b, "must be a quantity as a decimal string, such as \"0.530\"");
    if (mplus_quantity_parse(text, value, places, why, sizeof why) != 0)
        return berr(b, "%s", why);
    return 0;
}

static int emit_value(struct build *b, xmlNodePtr parent, const struct field *f, json_t *v)
{
    char text[64], why[160];
    switch (f->kind) {
    case F_TEXT:
        if (json_is_integer(v)) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
            return add(b, parent, f->name, text) ? 0 : -1;
        }
        if (!json_is_string(v))
            return berr(b, "must be a string");
        if (strlen(json_string_value(v)) != json_string_length(v) ||
            !xml_text_ok(json_string_value(v)))
            return berr(b, "holds a control character XML cannot carry");
        return add(b, parent, f->name, json_string_value(v)) ? 0 : -1;
    case F_INT:
    case F_LONG:
        return emit_integer(b, parent, f, v);
    case F_BOOL:
        if (!json_is_boolean(v))
            return berr(b, "must be true or false");
        return add(b, parent, f->name, json_is_true(v) ? "true" : "false") ? 0 : -1;
    case F_DECIMAL: {
        int64_t unused;
        int sc;
        if (!decimal_text(v, text, sizeof text))
            return berr(b, "must be a decimal string");
        if (dec_parse(text, &unused, &sc, why, sizeof why) != 0)
            return berr(b, "%s", why);
        return add(b, parent, f->name, text) ? 0 : -1;
    }
    case F_CENTS: {
        int64_t cents;
        if (!decimal_text(v, text, sizeof text))
            return berr(b, "must be an amount as a decimal string, such as \"9.95\"");
        if (mplus_cents_parse(text, &cents, why, sizeof why) != 0)
            return berr(b, "%s", why);
        return add_int(b, parent, f->name, (long long)cents);
    }
    case F_QTY: {
        int64_t value;
        int places;
        if (emit_quantity(b, v, &value, &places) != 0)
            return -1;
        return add_int(b, parent, f->name, (long long)value);
    }
    case F_PLACES:
        return berr(b, "decimal places are written with their quantity");
    case F_DATE:
    case F_DATETIME: {
        bool with_time = f->kind == F_DATETIME;
        struct mtime t;
        if (!json_is_string(v) || !iso_parse(json_string_value(v), with_time, &t))
            return berr(b, "must be %s",
                        with_time ? "an ISO-8601 date-time with an offset, such as "
                                    "\"2026-06-12T13:45:30+02:00\""
                                  : "a date as \"YYYY-MM-DD\"");
        xmlNodePtr el = add(b, parent, f->name, NULL);
        if (el == NULL)
            return -1;
        /* The order of SoapMplusDateTime and SoapMplusDate. isdst is not
         * known from an offset and the offset is what counts, so it is false,
         * as the official client sends it. */
        if (with_time && (add_int(b, el, "sec", t.sec) || add_int(b, el, "min", t.min) ||
                          add_int(b, el, "hour", t.hour)))
            return -1;
        if (add_int(b, el, "day", t.day) || add_int(b, el, "mon", t.mon) ||
            add_int(b, el, "year", t.year))
            return -1;
        if (with_time && (!add(b, el, "isdst", "false") || add_int(b, el, "timezone", t.tz)))
            return -1;
        return 0;
    }
    case F_COMPLEX: {
        struct xtype *t = &schema.types[f->type];
        if (t->list && v != NULL && !json_is_array(v))
            return berr(b, "must be an array (the items of %s)", t->name);
        xmlNodePtr el = add(b, parent, f->name, NULL);
        if (el == NULL)
            return -1;
        if (t->list)
            return v ? emit_field(b, el, t, &t->f[0], v, NULL) : 0;
        if (t->box && v != NULL && !json_is_object(v))
            return emit_value(b, el, &t->f[0], v);
        return emit_type(b, el, t, v);
    }
    }
    return berr(b, "unknown field kind");
}

/* A quantity's decimal places, where the schema puts them: derived from the
 * quantity's own digits. */
static int emit_places(struct build *b, xmlNodePtr parent, struct xtype *t, const struct field *f,
                       json_t *obj)
{
    const struct field *q = &t->f[f->partner];
    json_t *v = obj ? json_object_get(obj, q->name) : NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    int64_t value;
    int places;
    size_t mark = path_push(b, "%s%s", b->plen ? "." : "", q->name);
    int rc = emit_quantity(b, v, &value, &places);
    path_pop(b, mark);
    return rc == 0 ? add_int(b, parent, f->name, places) : -1;
}

static int emit_field(struct build *b, xmlNodePtr parent, struct xtype *t, const struct field *f,
                      json_t *v, json_t *obj)
{
    if (f->kind == F_PLACES)
        return emit_places(b, parent, t, f, obj);
    if (json_is_null(v))
        v = NULL;
    size_t mark = path_push(b, "%s%s", b->plen ? "." : "", f->name);
    int rc = 0;
    if (v == NULL) {
        if (f->optional)
            rc = 0;
        else if (f->kind == F_COMPLEX && empty_ok(&schema.types[f->type]))
            rc = emit_value(b, parent, f, NULL); /* schema-required, may be empty */
        else
            rc = berr(b, "is required (%s)", kind_name(f));
    } else if (f->repeated) {
        size_t i;
        json_t *item;
        if (!json_is_array(v))
            rc = berr(b, "must be an array");
        json_array_foreach(v, i, item)
        {
            if (rc != 0)
                break;
            size_t m2 = path_push(b, "[%zu]", i);
            rc = json_is_null(item) ? berr(b, "is null") : emit_value(b, parent, f, item);
            path_pop(b, m2);
        }
    } else {
        rc = emit_value(b, parent, f, v);
    }
    path_pop(b, mark);
    return rc;
}

static int emit_type(struct build *b, xmlNodePtr parent, struct xtype *t, json_t *obj)
{
    if (obj != NULL && !json_is_object(obj))
        return berr(b, "must be an object (%s)", t->name);
    if (++b->depth > MAX_DEPTH)
        return berr(b, "nested too deeply");
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int i = field_index(t, key);
        if (i < 0)
            return berr(b, "unknown field '%s' (not in %s)", key, t->name);
        if (t->f[i].kind == F_PLACES)
            return berr(b, "'%s' is derived: give %s as a decimal string with its decimals", key,
                        t->f[t->f[i].partner].name);
    }
    for (int i = 0; i < t->n; i++) {
        const struct field *f = &t->f[i];
        if (emit_field(b, parent, t, f, obj ? json_object_get(obj, f->name) : NULL, obj) != 0)
            return -1;
    }
    b->depth--;
    return 0;
}

int mplus_build_request(const char *op, json_t *request, char **xml, size_t *len, char *err,
                        size_t errlen)
{
    *xml = NULL;
    *len = 0;
    int oi = op_index(op);
    if (oi < 0) {
        gw_errf(err, errlen, "unknown Mplus operation '%s'", op ? op : "(null)");
        return -1;
    }
    const struct op *o = &ops[oi];
    struct build b = {.op = o->name, .err = err, .errlen = errlen};
    if (json_is_null(request))
        request = NULL;
    if (o->param == NULL && request != NULL &&
        (!json_is_object(request) || json_object_size(request) > 0))
        return berr(&b, "takes no request fields");

    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlNodePtr env = doc ? xmlNewDocNode(doc, NULL, BAD_CAST "Envelope", NULL) : NULL;
    if (env == NULL) {
        xmlFreeDoc(doc);
        return berr(&b, "out of memory");
    }
    xmlDocSetRootElement(doc, env);
    xmlNsPtr soap = xmlNewNs(env, BAD_CAST NS_SOAP, BAD_CAST "SOAP-ENV");
    b.ns = xmlNewNs(env, BAD_CAST NS_MPLUS, BAD_CAST "ns1");
    xmlSetNs(env, soap);
    xmlNodePtr body = NULL, opel = NULL;
    int rc = -1;
    if (soap == NULL || b.ns == NULL || xmlNewChild(env, soap, BAD_CAST "Header", NULL) == NULL ||
        (body = xmlNewChild(env, soap, BAD_CAST "Body", NULL)) == NULL) {
        berr(&b, "out of memory");
    } else if ((opel = add(&b, body, o->name, NULL)) != NULL) {
        rc = 0;
        /* An optional parameter without fields is left out; a required one is
         * sent, with whatever the schema requires inside it. */
        if (o->param && o->param_type == NULL) {
            /* A parameter of text ({"orderId": "..."}). */
            const char *text = json_string_value(json_object_get(request, o->param));
            rc = text == NULL                    ? berr(&b, "needs %s, a string", o->param)
                 : add(&b, opel, o->param, text) ? 0
                                                 : -1;
        } else if (o->param && (request != NULL || o->param_required)) {
            xmlNodePtr param = add(&b, opel, o->param, NULL);
            path_push(&b, "%s", o->param);
            rc = param ? emit_type(&b, param, &schema.types[schema.param[oi]], request) : -1;
        }
    }
    if (rc == 0) {
        xmlChar *mem = NULL;
        int size = 0;
        xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
        /* A copy, so the caller frees with free() whatever allocator libxml2 has. */
        *xml = mem ? malloc((size_t)size + 1) : NULL;
        if (*xml != NULL) {
            memcpy(*xml, mem, (size_t)size);
            (*xml)[size] = '\0';
            *len = (size_t)size;
        } else {
            rc = berr(&b, "out of memory");
        }
        xmlFree(mem);
    }
    xmlFreeDoc(doc);
    return rc;
}

/* ---- reading responses ------------------------------------------------------------ */

struct reader {
    const char *op;
    char path[512];
    size_t plen;
    char *msg;
    size_t msglen;
};

static json_t *rerr(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *rerr(struct reader *r, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    gw_errf(r->msg, r->msglen, "%s: answer %s%s%s", r->op, r->path, r->path[0] ? ": " : "", what);
    return NULL;
}

static size_t rpath_push(struct reader *r, const char *name)
{
    size_t mark = r->plen, n = strlen(name);
    if (r->plen + n + 2 <= sizeof r->path) { /* else the path stays cut where it was */
        if (r->plen > 0)
            r->path[r->plen++] = '.';
        memcpy(r->path + r->plen, name, n + 1);
        r->plen += n;
    }
    return mark;
}

static void rpath_pop(struct reader *r, size_t mark)
{
    r->plen = mark;
    r->path[mark] = '\0';
}

static bool is_element(xmlNodePtr n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && (name == NULL || xmlStrcmp(n->name, BAD_CAST name) == 0);
}

static xmlNodePtr first_element(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
        if (is_element(c, name))
            return c;
    return NULL;
}

static bool has_child_elements(xmlNodePtr n)
{
    return first_element(n, NULL) != NULL;
}

static bool is_nil(xmlNodePtr n)
{
    if (n->properties == NULL)
        return false;
    xmlChar *v = xmlGetNsProp(n, BAD_CAST "nil", BAD_CAST NS_XSI);
    bool nil = v && (xmlStrcmp(v, BAD_CAST "true") == 0 || xmlStrcmp(v, BAD_CAST "1") == 0);
    xmlFree(v);
    return nil;
}

/* The text of a number, boolean or date part, with the whitespace XSD
 * collapses for them removed. False when it does not fit buf. */
/* An element's text as it is when it is one text node (the usual case),
 * else NULL: then *copy holds it, to be freed with xmlFree. */
static const char *text_of(xmlNodePtr n, xmlChar **copy)
{
    *copy = NULL;
    xmlNodePtr c = n->children;
    if (c == NULL)
        return "";
    if (c->next == NULL && c->type == XML_TEXT_NODE && c->content != NULL)
        return (const char *)c->content;
    *copy = xmlNodeGetContent(n);
    return *copy ? (const char *)*copy : "";
}

static bool token_in(const char *s, char *buf, size_t len)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t k = strlen(s);
    while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t' || s[k - 1] == '\n' || s[k - 1] == '\r'))
        k--;
    bool ok = k < len;
    if (ok) {
        memcpy(buf, s, k);
        buf[k] = '\0';
    }
    return ok;
}

static json_t *text_in(struct reader *r, const char *s)
{
    json_t *v = gw_json_stringn(s, strlen(s));
    return v ? v : rerr(r, "text that is not UTF-8");
}

static json_t *read_text(struct reader *r, xmlNodePtr n)
{
    xmlChar *t;
    json_t *v = text_in(r, text_of(n, &t));
    xmlFree(t);
    return v;
}

static bool int_in(const char *s, int64_t *out)
{
    char buf[32];
    return token_in(s, buf, sizeof buf) && gw_strtoi64(buf, out);
}

/* xsd:decimal as canonical exact text: no '+', a digit before the point,
 * no bare point ("+.50" -> "0.50", "5." -> "5"). */
static json_t *decimal_in(struct reader *r, const char *s)
{
    char in[64], out[72];
    if (!token_in(s, in, sizeof in))
        return rerr(r, "expected a decimal number");
    const char *p = in;
    size_t k = 0;
    if (*p == '-')
        out[k++] = *p++;
    else if (*p == '+')
        p++;
    size_t int_digits = strspn(p, "0123456789");
    if (int_digits == 0)
        out[k++] = '0';
    memcpy(out + k, p, int_digits);
    k += int_digits;
    p += int_digits;
    if (*p == '.') {
        size_t frac = strspn(p + 1, "0123456789");
        if (frac > 0) {
            memcpy(out + k, p, frac + 1);
            k += frac + 1;
        }
        p += frac + 1;
        int_digits += frac;
    }
    out[k] = '\0';
    if (*p != '\0' || int_digits == 0)
        return rerr(r, "'%s' is not a decimal number", in);
    return json_string(out);
}

static const char *const time_parts[] = {"year", "mon", "day", "hour", "min", "sec", "timezone"};

/* A SoapMplusDate (three parts) or SoapMplusDateTime (seven) from the text of
 * its parts (NULL: absent), as ISO 8601 text, or JSON null when all are 0. */
static json_t *time_in(struct reader *r, const char *const text[7], bool with_time)
{
    int v[7] = {0};
    int nparts = with_time ? 7 : 3;
    bool all_zero = true;
    for (int i = 0; i < nparts; i++) {
        int64_t x;
        if (text[i] == NULL || !int_in(text[i], &x) || x < INT32_MIN || x > INT32_MAX)
            return rerr(r, "%s without a valid <%s>",
                        with_time ? "SoapMplusDateTime" : "SoapMplusDate", time_parts[i]);
        v[i] = (int)x;
        all_zero = all_zero && x == 0;
    }
    /* An all-zero struct is how an unset date comes back. */
    if (all_zero)
        return json_null();
    struct mtime t = {v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    if (!valid_time(&t, with_time))
        return rerr(r, "%04d-%02d-%02d %02d:%02d:%02d (timezone %d) is not a valid %s", t.year,
                    t.mon, t.day, t.hour, t.min, t.sec, t.tz, with_time ? "date-time" : "date");
    char buf[40];
    iso_format(&t, with_time, buf, sizeof buf);
    return json_string(buf);
}

static json_t *read_time(struct reader *r, xmlNodePtr n, bool with_time)
{
    const char *text[7] = {NULL};
    xmlChar *copy[7] = {NULL};
    for (int i = 0; i < (with_time ? 7 : 3); i++) {
        xmlNodePtr c = first_element(n, time_parts[i]);
        if (c != NULL)
            text[i] = text_of(c, &copy[i]);
    }
    json_t *v = time_in(r, text, with_time);
    for (int i = 0; i < 7; i++)
        xmlFree(copy[i]);
    return v;
}

static json_t *read_type(struct reader *r, xmlNodePtr el, struct xtype *t, int depth);

/*
 * Where a value read goes, the same for both readers (the tree reader here,
 * the streaming one below). Each takes v and returns false when it cannot
 * place it (v is freed then).
 */

/* Which of a type's first 256 fields an object has been given. */
typedef uint64_t field_set[4];

/* Member name of a type's object o: in an array when the field repeats (i
 * its index, -1 for a member the tables do not know); once otherwise. A
 * field that comes once is told from a second time by seen, with no look
 * into o. */
static bool put_field(json_t *o, const struct xtype *t, int i, const char *name, json_t *v,
                      field_set seen)
{
    if (i >= 0 && i < 256 && !t->f[i].repeated) {
        uint64_t bit = (uint64_t)1 << (i & 63);
        if (seen[i >> 6] & bit) {
            json_decref(v); /* appears twice */
            return false;
        }
        seen[i >> 6] |= bit;
        return json_object_set_new_nocheck(o, name, v) == 0;
    }
    json_t *old = json_object_get(o, name);
    if (i >= 0 && t->f[i].repeated) {
        if (old == NULL && json_object_set_new_nocheck(o, name, old = json_array()) != 0)
            old = NULL;
        return old != NULL && json_array_append_new(old, v) == 0;
    }
    if (old == NULL)
        return json_object_set_new_nocheck(o, name, v) == 0;
    json_decref(v); /* appears twice */
    return false;
}

/* Member name of an unknown element's object o: a repeated one becomes a list. */
static bool put_generic(json_t *o, const char *name, json_t *v)
{
    json_t *old = json_object_get(o, name);
    if (old == NULL)
        return json_object_set_new_nocheck(o, name, v) == 0;
    if (json_is_array(old))
        return json_array_append_new(old, v) == 0;
    return json_object_set_new_nocheck(o, name, json_pack("[O,o]", old, v)) == 0;
}

/* A list item of a boxed type (one required scalar, as TextList's Text) is
 * that scalar: o (taken) gives its value. */
static json_t *unbox(json_t *o, const struct xtype *t)
{
    json_t *v = json_incref(json_object_get(o, t->f[0].name));
    json_decref(o);
    return v ? v : json_null();
}

/* An element the tables do not know (a newer API): kept, as text or object. */
static json_t *read_generic(struct reader *r, xmlNodePtr el, int depth)
{
    if (depth > MAX_DEPTH)
        return rerr(r, "nested too deeply");
    if (!has_child_elements(el))
        return read_text(r, el);
    json_t *o = json_object();
    for (xmlNodePtr c = el->children; c; c = c->next) {
        if (!is_element(c, NULL))
            continue;
        json_t *v = read_generic(r, c, depth + 1);
        if (v == NULL) {
            json_decref(o);
            return NULL;
        }
        if (!put_generic(o, (const char *)c->name, v)) {
            json_decref(o);
            return rerr(r, "out of memory");
        }
    }
    return o;
}

/* A field of a simple kind (not a date, not complex) from its text. */
static json_t *scalar_in(struct reader *r, const struct field *f, const char *s)
{
    int64_t n;
    char buf[MPLUS_NUM_LEN];
    switch (f->kind) {
    case F_TEXT:
        return text_in(r, s);
    case F_INT:
    case F_LONG:
    case F_QTY: /* formatted once its places are known */
    case F_PLACES:
        if (!int_in(s, &n))
            return rerr(r, "expected an integer (%s)", kind_name(f));
        return json_integer((json_int_t)n);
    case F_BOOL:
        if (!token_in(s, buf, sizeof buf))
            return rerr(r, "expected true or false");
        if (strcmp(buf, "true") == 0 || strcmp(buf, "1") == 0)
            return json_true();
        if (strcmp(buf, "false") == 0 || strcmp(buf, "0") == 0)
            return json_false();
        return rerr(r, "expected true or false, got '%s'", buf);
    case F_DECIMAL:
        return decimal_in(r, s);
    case F_CENTS:
        if (!int_in(s, &n))
            return rerr(r, "expected an amount in cents");
        mplus_cents_format(n, buf, sizeof buf);
        return json_string(buf);
    default:
        return rerr(r, "unknown field kind");
    }
}

static json_t *read_value(struct reader *r, xmlNodePtr el, const struct field *f, int depth)
{
    switch (f->kind) {
    case F_TEXT:
    case F_INT:
    case F_LONG:
    case F_QTY:
    case F_PLACES:
    case F_BOOL:
    case F_DECIMAL:
    case F_CENTS: {
        xmlChar *t;
        json_t *v = scalar_in(r, f, text_of(el, &t));
        xmlFree(t);
        return v;
    }
    case F_DATE:
        return read_time(r, el, false);
    case F_DATETIME:
        return read_time(r, el, true);
    case F_COMPLEX: {
        struct xtype *t = &schema.types[f->type];
        if (depth > MAX_DEPTH)
            return rerr(r, "nested too deeply");
        if (!t->list) {
            json_t *o = read_type(r, el, t, depth + 1);
            return o == NULL || !t->box ? o : unbox(o, t);
        }
        json_t *a = json_array();
        const struct field *item = &t->f[0];
        for (xmlNodePtr c = el->children; c; c = c->next) {
            if (!is_element(c, item->name))
                continue; /* a wrapper holds its items only */
            size_t mark = rpath_push(r, item->name);
            json_t *v = is_nil(c) ? json_null() : read_value(r, c, item, depth + 1);
            rpath_pop(r, mark);
            if (v == NULL) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    }
    return rerr(r, "unknown field kind");
}

/* Quantities take their places from a sibling that may come after them. */
static json_t *fold_quantities(struct reader *r, json_t *o, struct xtype *t)
{
    for (int i = 0; i < t->n; i++) {
        const struct field *f = &t->f[i];
        if (f->kind != F_QTY)
            continue;
        json_t *v = json_object_get(o, f->name);
        json_t *p = json_object_get(o, t->f[f->partner].name);
        if (json_is_integer(v)) {
            json_int_t places = json_is_integer(p) ? json_integer_value(p) : DEFAULT_PLACES;
            char buf[MPLUS_NUM_LEN];
            if (places < 0 || places > MAX_PLACES ||
                mplus_quantity_format((int64_t)json_integer_value(v), (int)places, buf,
                                      sizeof buf) != 0) {
                json_decref(o);
                return rerr(r, "%s has %lld decimal places", f->name, (long long)places);
            }
            json_object_set_new(o, f->name, json_string(buf));
        }
        json_object_del(o, t->f[f->partner].name);
    }
    return o;
}

/* The field of t named name, looked for from cur on (answers come in schema
 * order), or -1. */
static int field_at(const struct xtype *t, int cur, const char *name)
{
    for (int k = 0; k < t->n; k++) {
        int j = (cur + k) % t->n;
        if (strcmp(t->f[j].name, name) == 0)
            return j;
    }
    return -1;
}

static json_t *read_type(struct reader *r, xmlNodePtr el, struct xtype *t, int depth)
{
    if (depth > MAX_DEPTH)
        return rerr(r, "nested too deeply");
    json_t *o = json_object();
    field_set seen = {0};
    int cur = 0;
    for (xmlNodePtr c = el->children; c; c = c->next) {
        if (!is_element(c, NULL))
            continue;
        const char *name = (const char *)c->name;
        int i = field_at(t, cur, name);
        size_t mark = rpath_push(r, name);
        json_t *v;
        if (i < 0)
            v = read_generic(r, c, depth + 1);
        else
            v = is_nil(c) ? json_null() : read_value(r, c, &t->f[i], depth + 1);
        if (v == NULL) {
            json_decref(o);
            return NULL;
        }
        if (!put_field(o, t, i, name, v, seen)) {
            json_decref(o);
            return rerr(r, "appears twice");
        }
        rpath_pop(r, mark);
        if (i >= 0)
            cur = i;
    }
    return fold_quantities(r, o, t);
}

/* ---- classification ----------------------------------------------------------------- */

/*
 * Mplus documents no fault code for refused credentials; the official client
 * mentions Client.Authentication. A Client fault whose code or text is about
 * the ident, the secret or authentication is taken as such.
 */
static bool about_credentials(const char *code, const char *text)
{
    static const char *const code_words[] = {"auth",  "credential", "ident",  "secret",
                                             "login", "permission", "denied", "forbidden"};
    static const char *const text_words[] = {
        "credential",      "authenticat",      "unauthori",        "not authori",
        "secret",          "access denied",    "invalid ident",    "unknown ident",
        "wrong ident",     "ident/secret",     "ident and secret", "ident or secret",
        "ident of secret", "permission denied"};
    const char *sub = code + strcspn(code, ".");
    for (size_t i = 0; *sub && i < sizeof code_words / sizeof *code_words; i++)
        if (strcasestr(sub, code_words[i]))
            return true;
    for (size_t i = 0; i < sizeof text_words / sizeof *text_words; i++)
        if (strcasestr(text, text_words[i]))
            return true;
    return false;
}

static int fault_kind(const char *code, const char *text)
{
    if (strncasecmp(code, "Server", 6) == 0 || strncasecmp(code, "Receiver", 8) == 0)
        return MPLUS_RETRY;
    if ((strncasecmp(code, "Client", 6) == 0 || strncasecmp(code, "Sender", 6) == 0) &&
        about_credentials(code, text))
        return MPLUS_AUTH;
    /* Client faults, and VersionMismatch or MustUnderstand: sending the same
     * request again gets the same answer. */
    return MPLUS_FAULT;
}

/* Text of a fault part, whitespace runs collapsed to one space. */
static void collapsed_text(xmlNodePtr n, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    out[0] = '\0';
    xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
    size_t k = 0;
    bool space = false;
    for (const char *s = t ? (const char *)t : ""; *s && k + 1 < outlen; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') {
            space = k > 0;
            continue;
        }
        if (space && k + 2 < outlen)
            out[k++] = ' ';
        space = false;
        out[k++] = *s;
    }
    out[k] = '\0';
    xmlFree(t);
}

static int read_fault(const char *op, xmlNodePtr fault, char *code, size_t codelen, char *msg,
                      size_t msglen)
{
    char fcode[128], fstring[600], detail[300];
    xmlNodePtr c = first_element(fault, "faultcode"), s = first_element(fault, "faultstring");
    if (c == NULL) /* SOAP 1.2 shape, should a proxy answer in it */
        c = first_element(first_element(fault, "Code"), "Value");
    if (s == NULL)
        s = first_element(first_element(fault, "Reason"), "Text");
    collapsed_text(c, fcode, sizeof fcode);
    collapsed_text(s, fstring, sizeof fstring);
    collapsed_text(first_element(fault, "detail"), detail, sizeof detail);
    /* "SOAP-ENV:Client.Authentication" -> "Client.Authentication" */
    const char *bare = strchr(fcode, ':') ? strchr(fcode, ':') + 1 : fcode;
    if (codelen > 0)
        gw_strlcpy(code, bare[0] ? bare : "(no faultcode)", codelen);
    int kind = fault_kind(bare, fstring);
    gw_errf(msg, msglen, "%s: SOAP fault %s: %s", op, bare[0] ? bare : "(no faultcode)",
            fstring[0] ? fstring : "(no faultstring)");
    if (detail[0] && strcmp(detail, fstring) != 0)
        gw_appendf(msg, msglen, " (detail: %s)", detail);
    if (kind == MPLUS_AUTH)
        gw_appendf(msg, msglen, "; check mplus_ident and mplus_secret of the connection");
    return kind;
}

/* In-band results: "...-RESULT-OK" is success, anything else says what failed. */
static int result_kind(const struct op *o, json_t *body, char *code, size_t codelen, char *msg,
                       size_t msglen)
{
    const char *res = json_string_value(json_object_get(body, "result"));
    if (res == NULL)
        return MPLUS_OK;
    size_t n = strlen(res);
    if (strcmp(res, "OK") == 0 || (n >= 3 && strcmp(res + n - 3, "-OK") == 0))
        return MPLUS_OK;
    if (codelen > 0)
        gw_strlcpy(code, res, codelen);
    if (o->answer_result && strcmp(res, o->answer_result) == 0)
        return MPLUS_OK;
    const char *why = json_string_value(json_object_get(body, "errorMessage"));
    gw_errf(msg, msglen, "%s: %s: %s", o->name, res,
            why && why[0] ? why : "(Mplus gave no errorMessage)");
    return MPLUS_FAULT;
}

/* The answer read as a document tree. */
static int read_tree(const struct op *o, int oi, const char *xml, size_t len, json_t **out,
                     char *code, size_t codelen, char *msg, size_t msglen)
{
    xmlResetLastError();
    xmlDocPtr doc = xmlReadMemory(xml, (int)len, NULL, NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                      XML_PARSE_COMPACT);
    if (doc == NULL) {
        const xmlError *e = xmlGetLastError();
        char why[200] = "";
        if (e && e->message)
            gw_strlcpy(why, e->message, sizeof why);
        why[strcspn(why, "\n")] = '\0';
        gw_errf(msg, msglen, "%s: the answer is not XML%s%s%s", o->name, why[0] ? " (" : "", why,
                why[0] ? ")" : "");
        return -1;
    }
    int kind = -1;
    xmlNodePtr env = xmlDocGetRootElement(doc);
    xmlNodePtr body = env && is_element(env, "Envelope") ? first_element(env, "Body") : NULL;
    xmlNodePtr first = first_element(body, NULL);
    if (doc->intSubset != NULL || doc->extSubset != NULL) {
        /* SOAP forbids a DTD; refusing it also refuses entity tricks. */
        gw_errf(msg, msglen, "%s: the answer carries a DTD, which SOAP does not allow", o->name);
    } else if (first == NULL) {
        gw_errf(msg, msglen, "%s: the answer is not a SOAP envelope with a Body", o->name);
    } else if (is_element(first, "Fault")) {
        kind = read_fault(o->name, first, code, codelen, msg, msglen);
    } else if (!is_element(first, o->response)) {
        gw_errf(msg, msglen, "%s: expected <%s> in the SOAP Body, got <%.60s>", o->name,
                o->response, (const char *)first->name);
    } else {
        struct reader r = {.op = o->name, .msg = msg, .msglen = msglen};
        json_t *j = read_type(&r, first, &schema.types[schema.response[oi]], 0);
        if (j != NULL) {
            kind = result_kind(o, j, code, codelen, msg, msglen);
            *out = j;
        }
    }
    xmlFreeDoc(doc);
    return kind;
}

/* ---- reading answers as they are parsed ----------------------------------------------
 *
 * The usual answer is read from the parser's events straight into JSON, with
 * no document tree in between. Anything out of the ordinary (a fault, a DTD,
 * an element inside a value, a value that does not read, an XML error) stops
 * it, and the answer is read again by the tree reader above, which says what
 * is wrong in its usual words: so both give the same result, and the unit
 * tests and the fuzz target compare them.
 */

#define STREAM_DEPTH 48 /* deeper answers are left to the tree reader */

enum sframe_kind {
    SF_SKIP,     /* not read: a SOAP header, a list's stray element, a nil value's content */
    SF_ENVELOPE, /* the root */
    SF_BODY,     /* the first Body in it */
    SF_TYPE,     /* a complex type: an object */
    SF_LIST,     /* a list type: an array */
    SF_SCALAR,   /* a simple value: its text */
    SF_NIL,      /* xsi:nil: null */
    SF_TIME,     /* a date or date-time: its parts */
    SF_PART,     /* one part of it */
    SF_GENERIC,  /* an element the tables do not know: text, or an object once it has children */
};

struct sframe {
    enum sframe_kind kind;
    const char *name;      /* the element's local name (the parser's, valid while parsing) */
    const struct field *f; /* the field it is, or NULL */
    int fi;                /* the field's index in its parent type, -1 when unknown */
    struct xtype *t;       /* SF_TYPE and SF_LIST: the type */
    json_t *v;             /* SF_TYPE, SF_LIST, SF_GENERIC with children: the value so far */
    int cur;               /* SF_TYPE: the field last matched */
    int part;              /* SF_PART: which */
    size_t part_at[7];     /* SF_TIME: where each part's text starts in parts, +1 (0: absent) */
    bool taken;            /* SF_ENVELOPE: its Body was read; SF_BODY: its answer */
    field_set seen;        /* SF_TYPE: which of its fields were placed */
};

struct stream {
    xmlParserCtxtPtr ctxt;
    const struct op *o;
    int oi;
    struct reader r; /* only for the shared value readers' messages, never shown */
    char msg[64];
    bool stopped;
    json_t *out;
    struct sframe st[STREAM_DEPTH];
    int depth;
    char *text; /* the text of the innermost value being read */
    size_t tlen, tcap;
    char *parts; /* the texts of a date's parts, NUL-separated */
    size_t plen, pcap;
};

static void stream_stop(struct stream *s)
{
    if (!s->stopped) {
        s->stopped = true;
        xmlStopParser(s->ctxt);
    }
}

static bool stream_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 256;
        while (want < *len + n + 1)
            want *= 2;
        char *grown = realloc(*buf, want);
        if (grown == NULL)
            return false;
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

/* xsi:nil="true" or "1" among SAX2 attributes (localname, prefix, URI, value, end);
 * *odd when a value holds an entity or a name an undeclared prefix, which the
 * tree reader then judges. */
static bool stream_nil(int n, const xmlChar **attrs, bool *odd)
{
    for (int i = 0; i < n; i++) {
        const xmlChar **a = attrs + 5 * i;
        size_t len = (size_t)(a[4] - a[3]);
        if (memchr(a[3], '&', len) != NULL || (a[1] != NULL && a[2] == NULL))
            *odd = true;
        if (a[2] != NULL && xmlStrcmp(a[0], BAD_CAST "nil") == 0 &&
            xmlStrcmp(a[2], BAD_CAST NS_XSI) == 0)
            return (len == 4 && memcmp(a[3], "true", 4) == 0) ||
                   (len == 1 && memcmp(a[3], "1", 1) == 0);
    }
    return false;
}

/* How an element holding field f is read. */
static void stream_value(struct sframe *c, const struct field *f)
{
    c->f = f;
    if (f->kind == F_DATE || f->kind == F_DATETIME) {
        c->kind = SF_TIME;
    } else if (f->kind != F_COMPLEX) {
        c->kind = SF_SCALAR;
    } else {
        c->t = &schema.types[f->type];
        c->kind = c->t->list ? SF_LIST : SF_TYPE;
        c->v = c->t->list ? json_array() : json_object();
    }
}

static void stream_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                         const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                         int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    (void)nb_namespaces, (void)namespaces, (void)nb_defaulted;
    struct stream *s = ctx;
    if (s->stopped)
        return;
    if (s->depth == STREAM_DEPTH) {
        stream_stop(s);
        return;
    }
    const char *name = (const char *)localname;
    struct sframe *p = s->depth > 0 ? &s->st[s->depth - 1] : NULL;
    struct sframe *c = &s->st[s->depth];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->fi = -1;
    /* An undeclared prefix is part of the name in the tree. */
    bool odd = prefix != NULL && uri == NULL;
    bool nil = stream_nil(nb_attributes, attributes, &odd);
    if (odd) {
        stream_stop(s);
        return;
    }
    s->tlen = 0;
    switch (p ? p->kind : SF_ENVELOPE) {
    case SF_ENVELOPE:
        if (p == NULL) {
            if (strcmp(name, "Envelope") != 0) {
                stream_stop(s);
                return;
            }
            c->kind = SF_ENVELOPE;
        } else if (!p->taken && strcmp(name, "Body") == 0) {
            p->taken = true;
            c->kind = SF_BODY;
        }
        break;
    case SF_BODY:
        if (p->taken)
            break;
        p->taken = true;
        if (strcmp(name, s->o->response) != 0) { /* a fault, or not the answer */
            stream_stop(s);
            return;
        }
        c->kind = SF_TYPE;
        c->t = &schema.types[schema.response[s->oi]];
        c->v = json_object();
        break;
    case SF_TYPE:
        c->fi = field_at(p->t, p->cur, name);
        if (c->fi < 0) {
            c->kind = SF_GENERIC;
            break;
        }
        p->cur = c->fi;
        if (nil) {
            c->kind = SF_NIL;
            c->f = &p->t->f[c->fi];
        } else {
            stream_value(c, &p->t->f[c->fi]);
        }
        break;
    case SF_LIST:
        if (strcmp(name, p->t->f[0].name) != 0)
            break; /* a wrapper holds its items only */
        if (nil)
            c->kind = SF_NIL;
        else
            stream_value(c, &p->t->f[0]);
        break;
    case SF_TIME:
        for (int i = 0; i < (p->f->kind == F_DATETIME ? 7 : 3); i++) {
            if (p->part_at[i] == 0 && strcmp(name, time_parts[i]) == 0) {
                c->kind = SF_PART;
                c->part = i;
            }
        }
        break;
    case SF_GENERIC:
        if (p->v == NULL)
            p->v = json_object();
        c->kind = SF_GENERIC;
        break;
    case SF_SCALAR:
    case SF_PART:
        stream_stop(s); /* an element inside a value */
        return;
    case SF_SKIP:
    case SF_NIL:
        break;
    }
    if (((c->kind == SF_TYPE || c->kind == SF_LIST) && c->v == NULL) ||
        (p != NULL && p->kind == SF_GENERIC && p->v == NULL)) {
        stream_stop(s); /* out of memory */
        return;
    }
    s->depth++;
}

/* Put v (taken) into the value of p, as the tree reader does. */
static bool stream_put(struct stream *s, struct sframe *p, struct sframe *c, json_t *v)
{
    switch (p->kind) {
    case SF_BODY:
        s->out = v;
        return true;
    case SF_LIST:
        return json_array_append_new(p->v, v) == 0;
    case SF_TYPE:
        return put_field(p->v, p->t, c->fi, c->name, v, p->seen);
    case SF_GENERIC:
        return put_generic(p->v, c->name, v);
    default:
        json_decref(v);
        return false;
    }
}

static void stream_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                       const xmlChar *uri)
{
    (void)localname, (void)prefix, (void)uri;
    struct stream *s = ctx;
    if (s->stopped || s->depth == 0)
        return;
    struct sframe *c = &s->st[--s->depth];
    struct sframe *p = s->depth > 0 ? &s->st[s->depth - 1] : NULL;
    const char *text = s->tlen > 0 ? s->text : "";
    json_t *v = NULL;
    switch (c->kind) {
    case SF_SKIP:
    case SF_ENVELOPE:
        return;
    case SF_BODY:
        if (!c->taken)
            stream_stop(s); /* an empty Body */
        return;
    case SF_PART:
        p->part_at[c->part] = s->plen + 1;
        if (!stream_append(&s->parts, &s->plen, &s->pcap, text, strlen(text) + 1))
            stream_stop(s);
        return;
    case SF_NIL:
        v = json_null();
        break;
    case SF_SCALAR:
        v = scalar_in(&s->r, c->f, text);
        break;
    case SF_TIME: {
        const char *parts[7] = {NULL};
        for (int i = 0; i < 7; i++)
            parts[i] = c->part_at[i] ? s->parts + c->part_at[i] - 1 : NULL;
        v = time_in(&s->r, parts, c->f->kind == F_DATETIME);
        s->plen = 0;
        break;
    }
    case SF_TYPE:
        v = fold_quantities(&s->r, c->v, c->t);
        c->v = NULL;
        if (v != NULL && c->f != NULL && c->t->box)
            v = unbox(v, c->t);
        break;
    case SF_LIST:
        v = c->v;
        c->v = NULL;
        break;
    case SF_GENERIC:
        v = c->v ? c->v : text_in(&s->r, text);
        c->v = NULL;
        break;
    }
    s->tlen = 0;
    if (v == NULL || !stream_put(s, p, c, v))
        stream_stop(s);
}

static void stream_text(void *ctx, const xmlChar *ch, int len)
{
    struct stream *s = ctx;
    if (s->stopped || s->depth == 0)
        return;
    const struct sframe *c = &s->st[s->depth - 1];
    if ((c->kind == SF_SCALAR || c->kind == SF_PART || (c->kind == SF_GENERIC && c->v == NULL)) &&
        !stream_append(&s->text, &s->tlen, &s->tcap, (const char *)ch, (size_t)len))
        stream_stop(s);
}

static void stream_dtd(void *ctx, const xmlChar *name, const xmlChar *external_id,
                       const xmlChar *system_id)
{
    (void)name, (void)external_id, (void)system_id;
    stream_stop(ctx); /* SOAP forbids a DTD: the tree reader says so */
}

static void stream_reference(void *ctx, const xmlChar *name)
{
    (void)name;
    stream_stop(ctx);
}

static void stream_quiet(void *ctx, xmlErrorPtr error)
{
    (void)ctx, (void)error;
}

/* The answer read as it is parsed: its kind, or MPLUS_NOT_STREAMED. */
static int read_stream(const struct op *o, int oi, const char *xml, size_t len, json_t **out,
                       char *code, size_t codelen, char *msg, size_t msglen)
{
    struct stream *s = calloc(1, sizeof *s);
    xmlParserCtxtPtr ctxt = s ? xmlCreateMemoryParserCtxt(xml, (int)len) : NULL;
    if (ctxt == NULL) {
        free(s);
        return MPLUS_NOT_STREAMED;
    }
    xmlSAXHandler sax = {0};
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = stream_start;
    sax.endElementNs = stream_end;
    sax.characters = stream_text;
    sax.ignorableWhitespace = stream_text;
    sax.cdataBlock = stream_text;
    sax.internalSubset = stream_dtd;
    sax.externalSubset = stream_dtd;
    sax.reference = stream_reference;
    sax.serror = stream_quiet;
    *ctxt->sax = sax;
    ctxt->userData = s;
    xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    s->ctxt = ctxt;
    s->o = o;
    s->oi = oi;
    s->r = (struct reader){.op = o->name, .msg = s->msg, .msglen = sizeof s->msg};
    xmlParseDocument(ctxt);
    bool read = !s->stopped && ctxt->wellFormed && s->depth == 0 && s->out != NULL;
    for (int i = 0; i < s->depth; i++)
        json_decref(s->st[i].v);
    xmlFreeParserCtxt(ctxt);
    free(s->text);
    free(s->parts);
    json_t *j = s->out;
    free(s);
    if (!read) {
        json_decref(j);
        return MPLUS_NOT_STREAMED;
    }
    *out = j;
    return result_kind(o, j, code, codelen, msg, msglen);
}

enum { READ_EITHER, READ_TREE, READ_STREAM };

static int parse_answer(const char *op, const char *xml, size_t len, json_t **out, char *code,
                        size_t codelen, char *msg, size_t msglen, int how)
{
    *out = NULL;
    if (codelen > 0)
        code[0] = '\0';
    gw_errf(msg, msglen, "%s", "");
    int oi = op_index(op);
    if (oi < 0) {
        gw_errf(msg, msglen, "unknown Mplus operation '%s'", op ? op : "(null)");
        return -1;
    }
    const struct op *o = &ops[oi];
    if (xml == NULL || len == 0 || len > INT_MAX) {
        gw_errf(msg, msglen, "%s: %s answer", o->name, len ? "oversized" : "empty");
        return -1;
    }
    int kind = how == READ_TREE ? MPLUS_NOT_STREAMED
                                : read_stream(o, oi, xml, len, out, code, codelen, msg, msglen);
    if (kind == MPLUS_NOT_STREAMED && how != READ_STREAM)
        kind = read_tree(o, oi, xml, len, out, code, codelen, msg, msglen);
    return kind;
}

int mplus_parse_response(const char *op, const char *xml, size_t len, json_t **out, char *code,
                         size_t codelen, char *msg, size_t msglen)
{
    return parse_answer(op, xml, len, out, code, codelen, msg, msglen, READ_EITHER);
}

int mplus_parse_response_tree(const char *op, const char *xml, size_t len, json_t **out, char *code,
                              size_t codelen, char *msg, size_t msglen)
{
    return parse_answer(op, xml, len, out, code, codelen, msg, msglen, READ_TREE);
}

int mplus_parse_response_stream(const char *op, const char *xml, size_t len, json_t **out,
                                char *code, size_t codelen, char *msg, size_t msglen)
{
    return parse_answer(op, xml, len, out, code, codelen, msg, msglen, READ_STREAM);
}

/* ---- URLs ---------------------------------------------------------------------------- */

struct sink {
    char *out;
    size_t len, k;
};

static void put(struct sink *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n && s->k + 1 < s->len; i++)
        s->out[s->k++] = p[i];
    s->out[s->k] = '\0';
}

static bool is_secret_param(const char *name, size_t n)
{
    return (n == 5 && strncasecmp(name, "ident", 5) == 0) ||
           (n == 6 && strncasecmp(name, "secret", 6) == 0);
}

void mplus_mask_url(const char *url, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    struct sink s = {out, outlen, 0};
    out[0] = '\0';
    if (url == NULL)
        return;
    const char *p = url;
    /* user:password@host */
    const char *scheme = strstr(url, "://");
    if (scheme != NULL) {
        const char *auth = scheme + 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = NULL;
        for (size_t i = 0; i < alen; i++)
            if (auth[i] == '@')
                at = auth + i;
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon != NULL) {
            put(&s, url, (size_t)(colon + 1 - url));
            put(&s, "***", 3);
            p = at;
        }
    }
    size_t head = strcspn(p, "?#");
    put(&s, p, head);
    p += head;
    if (*p != '?') {
        put(&s, p, strlen(p));
        return;
    }
    put(&s, "?", 1);
    p++;
    while (*p && *p != '#') {
        size_t plen = strcspn(p, "&#");
        size_t nlen = strcspn(p, "=&#");
        if (nlen < plen && is_secret_param(p, nlen)) {
            put(&s, p, nlen + 1);
            put(&s, "***", 3);
        } else {
            put(&s, p, plen);
        }
        p += plen;
        if (*p == '&') {
            put(&s, "&", 1);
            p++;
        }
    }
    put(&s, p, strlen(p));
}

/* ---- calls -------------------------------------------------------------------------- */

struct call {
    struct call *prev, *next; /* the client's pending calls */
    struct mplus *m;
    const struct gw_connection *c;
    char op[48];
    mplus_cb cb;
    void *arg;
    char request_id[40];
    struct event *early; /* a failure before sending, reported from the loop */
    struct mplus_result early_result;
};

struct mplus {
    struct event_base *base;
    struct http_client *http;
    struct call *calls;
    unsigned long seq;
};

static void unlink_call(struct call *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        call->m->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
}

static void free_call(struct call *call)
{
    if (call->early)
        event_free(call->early);
    free(call);
}

static void finish(struct call *call, struct mplus_result *r)
{
    gw_strlcpy(r->request_id, call->request_id, sizeof r->request_id);
    unlink_call(call);
    call->cb(r, call->arg);
    free_call(call);
}

/* Unique per call and across restarts; Mplus support can find a call by it. */
static void new_request_id(struct mplus *m, char *out, size_t outlen)
{
    unsigned char rnd[8];
    if (sig_random(rnd, sizeof rnd) == 0) {
        char hex[2 * sizeof rnd + 1];
        gw_hex(rnd, sizeof rnd, hex);
        snprintf(out, outlen, "gw-%s", hex);
    } else {
        snprintf(out, outlen, "gw-%llx-%lu", (long long)gw_now_ms(), ++m->seq);
    }
}

/* HTTP status without a SOAP answer to go by. */
static int status_kind(long status)
{
    if (status == 401 || status == 403)
        return MPLUS_AUTH;
    if (status == 408 || status == 425 || status == 429 || status >= 500 ||
        (status >= 200 && status < 300))
        return MPLUS_RETRY; /* 2xx here: an answer that could not be read, maybe a proxy's */
    return MPLUS_FAULT;     /* 404, 405...: the URL or port is wrong */
}

static void http_done(const struct http_response *resp, void *arg)
{
    struct call *call = arg;
    const struct gw_connection *c = call->c;
    struct mplus_result r = {.status = resp->status};
    json_t *body = NULL;
    char url[512];
    mplus_mask_url(c->mplus_url, url, sizeof url);
    if (resp->transport_error) {
        r.kind = MPLUS_RETRY;
        gw_errf(r.error, sizeof r.error, "%s: Mplus %s at %s: %s (X-Request-Id %s)", call->op,
                resp->timed_out ? "timed out" : "unreachable", url, resp->error, call->request_id);
    } else {
        char msg[800];
        int k = mplus_parse_response(call->op, resp->body, resp->body_len, &body, r.code,
                                     sizeof r.code, msg, sizeof msg);
        if (k >= 0 && (k != MPLUS_OK || (resp->status >= 200 && resp->status < 300))) {
            r.kind = k; /* a fault or a result says more than the status */
            if (k != MPLUS_OK)
                gw_errf(r.error, sizeof r.error, "%s (HTTP %ld, X-Request-Id %s)", msg,
                        resp->status, call->request_id);
        } else {
            json_decref(body);
            body = NULL;
            r.kind = status_kind(resp->status);
            gw_errf(r.error, sizeof r.error, "%s: HTTP %ld from Mplus at %s (X-Request-Id %s)",
                    call->op, resp->status, url, call->request_id);
            if (k < 0)
                gw_appendf(r.error, sizeof r.error, ": %s", msg);
            if (r.kind == MPLUS_AUTH)
                gw_appendf(r.error, sizeof r.error,
                           "; check mplus_ident and mplus_secret of the connection");
        }
    }
    static const enum metric_outcome outcome_of[] = {[MPLUS_OK] = MO_OK,
                                                     [MPLUS_FAULT] = MO_FAULT,
                                                     [MPLUS_RETRY] = MO_RETRY,
                                                     [MPLUS_AUTH] = MO_AUTH};
    metrics_delivery(MA_MPLUS, outcome_of[r.kind], resp->seconds);
    if (r.kind == MPLUS_AUTH)
        gw_log(GW_LOG_WARN, c->name, 0, "Mplus refused the credentials: %s", r.error);
    else if (r.kind != MPLUS_OK)
        gw_log(GW_LOG_DEBUG, c->name, 0, "%s", r.error);
    r.body = body;
    finish(call, &r);
    json_decref(body);
}

static void on_early(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct call *call = arg;
    finish(call, &call->early_result);
}

/* The URL with the credentials; the caller wipes and frees it. */
static char *credential_url(const struct gw_connection *c)
{
    char *ident = http_escape(c->mplus_ident ? c->mplus_ident : "");
    char *secret = http_escape(c->mplus_secret ? c->mplus_secret : "");
    char *url = NULL;
    if (ident && secret &&
        asprintf(&url, "%s%cident=%s&secret=%s", c->mplus_url,
                 strchr(c->mplus_url, '?') ? '&' : '?', ident, secret) < 0)
        url = NULL;
    if (ident)
        explicit_bzero(ident, strlen(ident));
    if (secret)
        explicit_bzero(secret, strlen(secret));
    free(ident);
    free(secret);
    return url;
}

/* Send the call; on failure fill call->early_result and return -1. */
static int send_call(struct call *call, json_t *request)
{
    struct mplus_result *r = &call->early_result;
    const struct gw_connection *c = call->c;
    char *xml = NULL;
    size_t len;
    if (c->mplus_url == NULL || c->mplus_url[0] == '\0') {
        r->kind = MPLUS_FAULT;
        gw_errf(r->error, sizeof r->error, "%s: connection %s has no mplus_url", call->op, c->name);
        return -1;
    }
    if (mplus_build_request(call->op, request, &xml, &len, r->error, sizeof r->error) != 0) {
        r->kind = MPLUS_FAULT;
        return -1;
    }
    char *url = credential_url(c);
    char rid[80], action[80], masked[512];
    snprintf(rid, sizeof rid, "X-Request-Id: %s", call->request_id);
    /* The official clients send the bare operation name. */
    snprintf(action, sizeof action, "SOAPAction: %s", call->op);
    const char *headers[] = {"Content-Type: text/xml; charset=utf-8", action, rid,
                             "Accept: text/xml", NULL};
    struct http_request req = {"POST", url, headers, xml, len, CALL_TIMEOUT_MS, CONNECT_TIMEOUT_MS};
    int rc = url ? http_start(call->m->http, &req, http_done, call) : -1;
    mplus_mask_url(c->mplus_url, masked, sizeof masked);
    if (url) {
        explicit_bzero(url, strlen(url));
        free(url);
    }
    free(xml);
    if (rc != 0) {
        r->kind = MPLUS_RETRY;
        gw_errf(r->error, sizeof r->error, "%s: could not start the request to %s", call->op,
                masked);
        return -1;
    }
    gw_log(GW_LOG_DEBUG, c->name, 0, "Mplus %s -> %s (X-Request-Id %s)", call->op, masked,
           call->request_id);
    return 0;
}

int mplus_call(struct mplus *m, const struct gw_connection *c, const char *op, json_t *request,
               mplus_cb cb, void *arg)
{
    struct call *call = calloc(1, sizeof *call);
    if (call == NULL)
        return -1;
    call->m = m;
    call->c = c;
    call->cb = cb;
    call->arg = arg;
    gw_strlcpy(call->op, op ? op : "", sizeof call->op);
    new_request_id(m, call->request_id, sizeof call->request_id);
    call->next = m->calls;
    if (m->calls)
        m->calls->prev = call;
    m->calls = call;
    if (send_call(call, request) == 0)
        return 0;
    /* Reported from the loop like any answer, so callers never see their
     * callback run inside mplus_call. */
    static const struct timeval now = {0, 0};
    call->early = evtimer_new(m->base, on_early, call);
    if (call->early == NULL || evtimer_add(call->early, &now) != 0) {
        unlink_call(call);
        free_call(call);
        return -1;
    }
    if (call->early_result.kind != MPLUS_RETRY)
        gw_log(GW_LOG_WARN, c->name, 0, "%s", call->early_result.error);
    return 0;
}

struct mplus *mplus_new(struct event_base *base, const struct gw_config *cfg,
                        struct http_client *http)
{
    struct mplus *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->base = base;
    m->http = http;
    pthread_once(&schema_once, schema_init);
    return m;
}

void mplus_free(struct mplus *m)
{
    if (m == NULL)
        return;
    while (m->calls) {
        struct call *call = m->calls;
        unlink_call(call);
        free_call(call);
    }
    free(m);
}
