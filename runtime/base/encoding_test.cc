#include "runtime/base/encoding.h"

#include <gtest/gtest.h>

namespace parallelrun::rt {
namespace {

TEST(EncodingTest, Base64EncodesWithPadding) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode(std::string("\xff\xfe\x00", 3)), "//4A");
}

TEST(EncodingTest, Base64RoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 37) {
    auto back = Base64Decode(Base64Encode(all.substr(0, n)));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, all.substr(0, n));
  }
}

TEST(EncodingTest, Base64DecodeSkipsWhitespaceAndTakesUnpadded) {
  auto wrapped = Base64Decode("Zm9v\nYmFy\r\n");
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(*wrapped, "foobar");
  auto unpadded = Base64Decode("Zm8");
  ASSERT_TRUE(unpadded.ok());
  EXPECT_EQ(*unpadded, "fo");
}

TEST(EncodingTest, Base64DecodeRejectsWhatIsNotBase64) {
  for (const char* text : {"%%%", "Zm9v-", "Zg==Zg==", "Z", "Zm9vY", "Zg=", "Zg==="}) {
    auto r = Base64Decode(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("not valid base64"), std::string::npos);
  }
}

}  // namespace
}  // namespace parallelrun::rt
