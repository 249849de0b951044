#include "gguf/value.h"

#include <gtest/gtest.h>

namespace velocity::gguf {
namespace {

TEST(Value, ScalarsKeepTheirExactType) {
  const Value v = Value::scalar<uint32_t>(4096);
  EXPECT_EQ(v.type(), ValueType::UINT32);
  EXPECT_EQ(v.get<uint32_t>(), 4096u);
  EXPECT_EQ(v.as_uint(), 4096u);
  EXPECT_EQ(v.as_int(), 4096);
  EXPECT_EQ(v.as_double(), 4096.0);
  EXPECT_THROW(v.get<int32_t>(), Error);
  EXPECT_THROW(v.as_string(), Error);
  EXPECT_THROW(Value::scalar<int8_t>(-1).as_uint(), Error);
  EXPECT_EQ(Value::scalar<uint64_t>(~0ull).as_uint(), ~0ull);
  EXPECT_THROW(Value::scalar<uint64_t>(~0ull).as_int(), Error);
  EXPECT_TRUE(Value::scalar(true).as_bool());
  EXPECT_EQ(Value::scalar(0.5f).as_double(), 0.5);
}

TEST(Value, Arrays) {
  const Value ints = Value::array(std::vector<int32_t>{1, -2, 3});
  EXPECT_EQ(ints.array_size(), 3u);
  EXPECT_EQ(ints.elem_type(), ValueType::INT32);
  EXPECT_EQ(ints.array_as<int32_t>(), (std::vector<int32_t>{1, -2, 3}));
  EXPECT_EQ(ints.int_array(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_THROW(ints.array_as<uint32_t>(), Error);
  EXPECT_THROW(ints.float_array(), Error);

  const Value strs = Value::array(std::vector<std::string>{"a", "bc"});
  EXPECT_EQ(strs.strings().size(), 2u);
  EXPECT_EQ(strs.summary(), "[2 x STRING] \"a\", \"bc\"");

  const Value nested = Value::array_of_arrays({ints, strs});
  EXPECT_EQ(nested.array_size(), 2u);
  EXPECT_EQ(nested.arrays()[1], strs);
  EXPECT_NE(nested.arrays()[0], strs);
  EXPECT_THROW(Value::array_of_arrays({Value::scalar<uint8_t>(1)}), Error);

  const Value bools = Value::array(std::vector<bool>{true, false});
  EXPECT_EQ(bools.array_as<bool>(), (std::vector<bool>{true, false}));
}

}  // namespace
}  // namespace velocity::gguf
